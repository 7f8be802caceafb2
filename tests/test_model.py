"""The M-CNN's topology and its analytic cost match mcnn-architecture.md."""

import numpy as np
import pytest

import mcnn_keras
from mcnn_keras import model as model_lib


def test_full_resolution_topology_and_parameter_count():
    model = mcnn_keras.build_model(1024, 1280)
    assert model.count_params() == 42_577_261
    assert tuple(model.get_layer("concat").output.shape) == (None, 16, 20, 208)
    assert tuple(model.get_layer("ip0").kernel.shape) == (81_920, 512)
    assert tuple(model.output.shape) == (None, 13)
    assert model.count_params() * 4 / 2**20 == pytest.approx(162.4, abs=0.05)
    # Functional: seven pathways all read the same input.
    assert isinstance(model, mcnn_keras.build_model.__globals__["keras"].Model)
    assert [model.get_layer(f"s{s}_conv3").output.shape[-1] for s in model_lib.SCALES] == \
        list(model_lib.FILTERS)


def test_724_is_zero_padded_to_768():
    model = mcnn_keras.build_model(724, 724)
    assert model.count_params() == 19_508_589
    assert tuple(model.get_layer("pad").output.shape) == (None, 768, 768, 3)
    assert tuple(model.get_layer("concat").output.shape) == (None, 12, 12, 208)
    assert tuple(model.get_layer("ip0").kernel.shape) == (36_864, 512)
    assert model_lib.flat_features(724, 724) == 36_864


def test_factored_dense_variant_has_the_same_weights():
    from mcnn_keras.factored_dense import FactoredDense, has_replica_invariant_gradient
    plain = mcnn_keras.build_model(256, 320)
    factored = mcnn_keras.build_model(256, 320, factored_dense=True)
    assert isinstance(factored.get_layer("ip0"), FactoredDense)
    assert type(plain.get_layer("ip0")).__name__ == "Dense"
    assert [w.shape for w in factored.weights] == [w.shape for w in plain.weights]
    assert has_replica_invariant_gradient(factored.get_layer("ip0").kernel.value)
    assert not has_replica_invariant_gradient(factored.get_layer("ip0").bias.value)
    assert model_lib.flat_features(256, 320) == factored.get_layer("ip0").kernel.shape[0]


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
