"""The M-CNN's topology and its analytic cost match mcnn-architecture.md."""

import numpy as np
import pytest

import mcnn_keras
from mcnn_keras.model import topology


def test_full_resolution_topology_and_parameter_count():
    model = mcnn_keras.build_model(1024, 1280)
    assert model.count_params() == 42_577_261
    assert tuple(model.get_layer("concat").output.shape) == (None, 16, 20, 208)
    assert tuple(model.get_layer("ip0").kernel.shape) == (81_920, 512)
    assert tuple(model.output.shape) == (None, 13)
    assert model.count_params() * 4 / 2**20 == pytest.approx(162.4, abs=0.05)
    # Functional: seven pathways all read the same input.
    scaled = model.get_layer("scale").output
    heads = [model.get_layer("s1_conv1")] + [model.get_layer(f"s{s}_prepool")
                                             for s in topology.SCALES if s > 1]
    assert len(model.inputs) == 1 and all(h.input is scaled for h in heads)
    assert [model.get_layer(f"s{s}_conv3").output.shape[-1] for s in topology.SCALES] == \
        list(topology.FILTERS)


def test_five_stains_add_only_the_first_convolutions_input_weights():
    three = mcnn_keras.build_model(1024, 1280)
    five = mcnn_keras.build_model(1024, 1280, channels=5)
    first_convs = [f"s{s}_conv1" for s in topology.SCALES]
    # Each pathway's first 5x5 convolution takes C inputs: 2 stains more add
    # 5 x 5 x 2 x filters weights per pathway, 10 400 in all; nothing else changes.
    extra = sum(5 * 5 * 2 * f for f in topology.FILTERS)
    assert extra == topology.first_conv_weights(5) - topology.first_conv_weights(3) == 10_400
    assert five.count_params() == 42_577_261 + extra
    assert five.count_params() == topology.model_cost(1024, 1280, channels=5).parameters
    assert tuple(five.input.shape) == (None, 1024, 1280, 5)
    for name in first_convs:
        assert five.get_layer(name).kernel.shape[2] == 5
        assert three.get_layer(name).kernel.shape[2] == 3
    later = [w.shape for w in five.weights if not any(n in w.path for n in first_convs)]
    assert later == [w.shape for w in three.weights
                     if not any(n in w.path for n in first_convs)]


@pytest.mark.parametrize("channels", [0, -1, 2.0, True])
def test_a_channel_count_below_one_is_refused(channels):
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        mcnn_keras.build_model(128, 128, channels=channels)


def test_724_is_zero_padded_to_768():
    model = mcnn_keras.build_model(724, 724)
    assert model.count_params() == 19_508_589
    assert tuple(model.get_layer("pad").output.shape) == (None, 768, 768, 3)
    assert tuple(model.get_layer("concat").output.shape) == (None, 12, 12, 208)
    assert tuple(model.get_layer("ip0").kernel.shape) == (36_864, 512)
    assert topology.flat_features(724, 724) == 36_864


def test_factored_dense_variant_has_the_same_weights():
    from mcnn_keras.model.factored_dense import FactoredDense, has_replica_invariant_gradient
    plain = mcnn_keras.build_model(256, 320)
    factored = mcnn_keras.build_model(256, 320, factored_dense=True)
    assert isinstance(factored.get_layer("ip0"), FactoredDense)
    assert type(plain.get_layer("ip0")).__name__ == "Dense"
    assert [w.shape for w in factored.weights] == [w.shape for w in plain.weights]
    assert has_replica_invariant_gradient(factored.get_layer("ip0").kernel.value)
    assert not has_replica_invariant_gradient(factored.get_layer("ip0").bias.value)
    assert topology.flat_features(256, 320) == factored.get_layer("ip0").kernel.shape[0]


@pytest.mark.parametrize("height,width", [(1000, 1280), (1024, 100), (724, 700), (0, 128), (96, 128)])
def test_unsupported_sizes_fail_clearly(height, width):
    with pytest.raises(ValueError, match="multiple of 64|positive"):
        mcnn_keras.build_model(height, width)


def test_analytic_cost_matches_the_paper():
    cost = mcnn_keras.model_cost(1024, 1280)
    assert cost.parameters == 42_577_261
    assert cost.forward_flops / 1e9 == pytest.approx(51.4, abs=0.05)
    assert cost.conv_activation_bytes / 1e6 == pytest.approx(342, abs=0.5)
    assert cost.all_activation_bytes / 1e6 == pytest.approx(364, abs=0.5)
    assert cost.conv_activation_bytes * 32 / 1e9 == pytest.approx(10.95, abs=0.01)
    assert cost.training_flops / 1e9 == pytest.approx(154, abs=0.5)
    # The full-resolution pathway is 71 % of the FLOPs (36.7 of 51.4 GFLOP).
    full = 2 * 1024 * 1280 * 25 * (3 * 16 + 16 * 16 + 16 * 16)
    assert full / 1e9 == pytest.approx(36.7, abs=0.05)
    small = mcnn_keras.model_cost(724, 724)
    assert small.parameters == 19_508_589
    assert small.forward_flops / 1e9 == pytest.approx(23.1, abs=0.05)
    assert small.conv_activation_bytes / 1e6 == pytest.approx(154, abs=0.5)


def test_cost_parameters_agree_with_keras_at_small_sizes():
    for height, width in [(128, 128), (256, 320)]:
        assert mcnn_keras.model_cost(height, width).parameters == \
            mcnn_keras.build_model(height, width).count_params()


def test_uint8_input_is_scaled_inside_and_mixed_precision_keeps_float32_logits():
    model = mcnn_keras.build_model(128, 128, dtype_policy="mixed_bfloat16")
    assert model.get_layer("s1_conv1").compute_dtype == "bfloat16"
    images = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3)).astype(np.uint8)
    logits = model(images)
    assert str(logits.dtype) == "<dtype: 'float32'>" or "float32" in str(logits.dtype)
    assert np.all(np.isfinite(np.asarray(logits)))


def test_weight_decay_regularises_every_kernel_and_bias():
    model = mcnn_keras.build_model(128, 128, weight_decay=5e-5)
    assert len(model.losses) == len(model.trainable_weights) == 2 * (7 * 3 + 1 + 2)
    expected = 5e-5 / 2 * sum(float(np.sum(np.square(w))) for w in model.get_weights())
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-4)


# --- Rematerialization (--remat) ---------------------------------------------------

def _loss_and_grads(model, images, labels):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    @tf.function  # graph mode, as training runs
    def grads(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True)) + sum(model.losses)
        return loss, tape.gradient(loss, model.trainable_variables)
    return grads


def _batch(count, size=128):
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (count, size, size, 3)).astype(np.uint8),
            rng.integers(0, 13, (count,)))


@pytest.mark.parametrize("remat", ["full_res", "all"])
def test_remat_keeps_the_weights_their_names_and_order(remat):
    plain = mcnn_keras.build_model(128, 128, weight_decay=5e-5)
    recomputing = mcnn_keras.build_model(128, 128, weight_decay=5e-5, remat=remat)
    assert recomputing.count_params() == plain.count_params() == 1_158_509
    assert [(w.path, w.shape) for w in recomputing.weights] == \
        [(w.path, w.shape) for w in plain.weights]
    assert len(recomputing.losses) == len(plain.losses) == 48
    assert "pathways" in [layer.name for layer in recomputing.layers]
    with pytest.raises(ValueError, match="remat must be one of"):
        mcnn_keras.build_model(128, 128, remat="some")


@pytest.mark.parametrize("remat,recomputed_convs", [("full_res", 3), ("all", 21)])
def test_remat_recomputes_image_by_image_and_gives_the_same_gradients(remat, recomputed_convs):
    images, labels = _batch(3)
    plain = mcnn_keras.build_model(128, 128, weight_decay=5e-5)
    recomputing = mcnn_keras.build_model(128, 128, weight_decay=5e-5, remat=remat)
    recomputing.set_weights(plain.get_weights())
    plain_fn = _loss_and_grads(plain, images, labels)
    remat_fn = _loss_and_grads(recomputing, images, labels)
    loss, grads = plain_fn(images, labels)
    remat_loss, remat_grads = remat_fn(images, labels)
    assert float(remat_loss) == pytest.approx(float(loss), rel=1e-6)
    for g, r in zip(grads, remat_grads):
        scale = float(np.max(np.abs(g))) or 1.0
        assert float(np.max(np.abs(np.asarray(r) - np.asarray(g)))) <= 1e-5 * scale
    # The gradient graph runs the recomputed convolutions once more per image,
    # and the forward pass runs them per image: 3 images.
    def convs(fn):
        graph = fn.get_concrete_function(images, labels).graph
        return sum(op.type == "Conv2D" for op in graph.get_operations())
    assert convs(plain_fn) == 22
    assert convs(remat_fn) == 22 + recomputed_convs * (3 - 1) + recomputed_convs * 3


def test_checkpoints_load_across_remat_and_plain(tmp_path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import config  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import training  # pylint: disable=import-outside-toplevel
    images, labels = _batch(2)

    def trained(remat, steps):
        model = mcnn_keras.build_model(128, 128, weight_decay=5e-5, remat=remat)
        optimizer = training.compile_model(model, config.ScheduleConfig(), 13)
        for _ in range(steps):
            model.train_on_batch(images, labels)
        return model, tf.train.Checkpoint(model=model, optimizer=optimizer)

    for source, target in (("none", "full_res"), ("all", "none")):
        model, checkpoint = trained(source, 1)  # momentum is non-zero now
        path = checkpoint.save(str(tmp_path / f"{source}-{target}" / "ckpt"))
        other, other_checkpoint = trained(target, 0)
        other_checkpoint.restore(path).assert_existing_objects_matched()
        for mine, theirs in zip(model.weights, other.weights):
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
        assert int(other.optimizer.iterations) == 1
        for mine, theirs in zip(model.optimizer.variables, other.optimizer.variables):
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))


def test_remat_model_exports_through_a_plain_float32_copy():
    from mcnn_keras.export import signatures  # pylint: disable=import-outside-toplevel
    images, _ = _batch(2)
    recomputing = mcnn_keras.build_model(128, 128, remat="full_res")
    copy = signatures.float32_copy(recomputing)
    assert "pathways" not in [layer.name for layer in copy.layers]
    np.testing.assert_allclose(np.asarray(copy(images)), np.asarray(recomputing(images)),
                               rtol=1e-5, atol=1e-6)


# --- The full-resolution pathway on the space-to-depth image (prototype) -----------

def test_space_to_depth_kernel_reproduces_a_5x5_convolution():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mcnn_keras.model import space_to_depth as s2d  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 8, 12, 3)).astype(np.float32)
    kernel = rng.normal(size=(5, 5, 3, 4)).astype(np.float32)
    plain = tf.nn.conv2d(x, kernel, 1, "SAME")
    flat = np.append(kernel.reshape(-1), 0.0)
    fast = tf.nn.depth_to_space(tf.nn.conv2d(tf.nn.space_to_depth(x, 2),
                                             flat[s2d.kernel_indices(5, 3, 4)], 1, "SAME"), 2)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5)
    # Every 5x5 tap is used 16 times: once per (output, input) sub-pixel pair it reaches.
    counts = np.bincount(s2d.kernel_indices(5, 1, 1).reshape(-1), minlength=26)
    assert counts[:25].sum() == 25 * 4 and counts[25] == 9 * 16 - 100


def test_space_to_depth_model_has_the_same_weights_outputs_and_gradients():
    images, labels = _batch(2)
    plain = mcnn_keras.build_model(128, 128, weight_decay=5e-5)
    for remat in ("none", "full_res"):
        fast = mcnn_keras.build_model(128, 128, weight_decay=5e-5, space_to_depth=True,
                                      remat=remat)
        assert fast.count_params() == plain.count_params()
        assert [(w.path, w.shape) for w in fast.weights] == \
            [(w.path, w.shape) for w in plain.weights]
        fast.set_weights(plain.get_weights())
        np.testing.assert_allclose(np.asarray(fast(images)), np.asarray(plain(images)),
                                   rtol=1e-5, atol=1e-6)
        _, grads = _loss_and_grads(plain, images, labels)(images, labels)
        _, fast_grads = _loss_and_grads(fast, images, labels)(images, labels)
        for g, f in zip(grads, fast_grads):
            scale = float(np.max(np.abs(g))) or 1.0
            assert float(np.max(np.abs(np.asarray(f) - np.asarray(g)))) <= 1e-5 * scale
    layer = mcnn_keras.build_model(128, 128, space_to_depth=True).get_layer("s1_conv2")
    assert tuple(layer.input.shape) == (None, 64, 64, 64)  # it really runs on the 2x2 blocks
