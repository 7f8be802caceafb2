"""Sufficient-factor gradients, on a real MirroredStrategy over 2 logical CPUs.

In float32 and under `mixed_bfloat16` (bf16 factors are all-gathered as raw
bits: TensorFlow's all-gather takes no bfloat16). The 2-worker end-to-end
checks (real processes, real collectives over gRPC) are
`tests/test_multiworker.py::test_gradients_are_averaged...` and
`tests/test_multiworker_bf16.py`.
"""

import numpy as np
import pytest
import tensorflow as tf

# Before any op: split the CPU into two logical devices (one replica each).
_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # pylint: disable=wrong-import-position

from mcnn_keras.model import factored_dense  # pylint: disable=wrong-import-position
from mcnn_keras.model.factored_dense import FactoredDense  # pylint: disable=wrong-import-position
from mcnn_keras.model.optimizer import SGD  # pylint: disable=wrong-import-position
from mcnn_keras.model import topology

# One strategy for the whole module: two MirroredStrategy objects in one
# process reuse the same collective keys and clash.
MIRRORED = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def test_use_factors_rule():
    # M-CNN at 1024 x 1280: factors win below a global batch of about 508.
    assert topology.use_factors("auto", 16, 81920, 512)
    assert not topology.use_factors("auto", 1024, 81920, 512)
    assert not topology.use_factors("auto", 16, 512, 13)
    assert topology.use_factors("factors", 4096, 512, 13)
    assert not topology.use_factors("allreduce", 2, 81920, 512)
    with pytest.raises(ValueError, match="dense_gradient must be one of"):
        topology.use_factors("bogus", 8, 10, 10)


def _model(layer_class, seed=3, dtype=None):
    """`dtype="mixed_bfloat16"`: the big layer computes in bf16, as in the M-CNN."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((24,))
    x = layer_class(16, activation="relu", name="big", dtype=dtype,
                    kernel_regularizer=keras.regularizers.L2(1e-2))(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="head", dtype="float32")(x))


def _train(layer_class, strategy, data, steps=3, dtype=None):
    with strategy.scope():
        model = _model(layer_class, dtype=dtype)
        model.compile(optimizer=SGD(0.1, momentum=0.9, nesterov=True),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return [w.numpy() for w in model.trainable_weights]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 24)).astype("float32"), rng.integers(0, 3, 64)


def test_two_replicas_with_factors_equal_one_replica(data):
    """Kernel gradient from all-gathered factors == plain all-reduced SGD."""
    one = _train(keras.layers.Dense, tf.distribute.OneDeviceStrategy("/cpu:0"), data)
    plain = _train(keras.layers.Dense, MIRRORED, data)
    factored = _train(FactoredDense, MIRRORED, data)
    for a, b, c in zip(one, plain, factored):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-6)
    assert not np.allclose(one[0], _model(keras.layers.Dense).get_weights()[0])  # it trained


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_factored_kernel_gradient_is_replica_invariant_and_global(data, dtype):
    """Each replica's kernel gradient equals 1/n of the global one, bitwise alike."""
    strategy = MIRRORED
    with strategy.scope():
        model = _model(FactoredDense, dtype=dtype)
    x, y = data[0][:8], data[1][:8]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(inputs, labels):
        with tf.GradientTape() as tape:
            # Keras scales the loss by 1/replicas itself under a strategy.
            loss = loss_fn(labels, model(inputs, training=True))
        return tape.gradient(loss, model.get_layer("big").kernel)

    shards = strategy.experimental_distribute_values_from_function(
        lambda ctx: (x[4 * ctx.replica_id_in_sync_group:][:4],
                     y[4 * ctx.replica_id_in_sync_group:][:4]))
    grads = strategy.experimental_local_results(
        strategy.run(tf.function(step), args=shards))
    with tf.GradientTape() as tape:  # the whole batch on one device
        loss = loss_fn(y, model(x, training=True))
    expected = tape.gradient(loss, model.get_layer("big").kernel).numpy()
    assert grads[0].dtype == tf.float32  # the variable's dtype
    np.testing.assert_array_equal(grads[0].numpy(), grads[1].numpy())
    if dtype == "float32":
        np.testing.assert_allclose(grads[0].numpy(), expected / 2, rtol=1e-5, atol=1e-7)
    else:
        diff = np.max(np.abs(grads[0].numpy() - expected / 2)) / np.max(np.abs(expected / 2))
        assert diff <= 2 * BF16_U, diff  # measured: 0 (same roundings, 1/2 is exact)
        assert np.max(np.abs(grads[0].numpy() - expected)) > 0.25 * np.max(np.abs(expected))


def test_optimizer_skips_only_marked_gradients_in_all_reduce():
    """Marked: n x local (no collective); unmarked: the all-reduced sum."""
    strategy = MIRRORED
    with strategy.scope():
        marked, plain = keras.Variable(np.zeros(3, "float32")), keras.Variable(np.zeros(3, "float32"))
        factored_dense.mark_replica_invariant_gradient(marked)
        optimizer = SGD(1.0)

    def reduce_():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        g = tf.fill([3], tf.cast(replica + 1, tf.float32))  # 1 on replica 0, 2 on 1
        pairs = optimizer._all_reduce_sum_gradients(  # pylint: disable=protected-access
            [(g, marked.value), (g, plain.value)])
        return pairs[0][0], pairs[1][0]

    results = [strategy.experimental_local_results(r) for r in strategy.run(reduce_)]
    assert [r.numpy().tolist() for r in results[0]] == [[2.0] * 3, [4.0] * 3]
    assert [r.numpy().tolist() for r in results[1]] == [[3.0] * 3, [3.0] * 3]
    assert factored_dense.has_replica_invariant_gradient(marked.value)
    assert not factored_dense.has_replica_invariant_gradient(plain.value)


def test_outside_replicas_it_is_a_plain_dense(data):
    factored = _model(FactoredDense)
    plain = _model(keras.layers.Dense)
    np.testing.assert_array_equal(factored.predict(data[0], verbose=0),
                                  plain.predict(data[0], verbose=0))
    restored = keras.Model.from_config(factored.get_config())
    assert isinstance(restored.get_layer("big"), FactoredDense)


# --- mixed_bfloat16 -------------------------------------------------------------
#
# bfloat16 keeps 8 significant bits: unit roundoff u = 2^-8 (0.39 %). Both
# paths round the big layer's kernel gradient to bf16 (the matmul accumulates
# in float32), but at different points: the factored path rounds the global
# X^T dY once; the all-reduce path rounds each replica's half sum, then adds
# the two in float32. The weights are float32 variables, so after a few steps
# the paths differ by about u of the update (relative to its largest element;
# single elements near 0 can differ more in relative terms). Measured here
# after 3 steps: 2.9e-3 factored vs all-reduce, 3.6e-3 against one device
# (bf16 vs float32 on one device: 4.0e-3). Tolerance 4u = 1.6e-2; training on
# one replica's half batch is 2.9, far outside.
BF16_U = 2.0**-8


def _relative_update_diff(trained, reference, start):
    """max |(a - w0) - (b - w0)| / max |b - w0| over all tensors: normwise, in updates."""
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b - w0)))
               for a, b, w0 in zip(trained, reference, start))


def test_bf16_two_replicas_with_factors_equal_all_reduce(data):
    """Under mixed_bfloat16 the factored path runs (bf16 all-gather) and gives the
    all-reduce path's update within bf16 precision; a wrong setup does not."""
    start = [w.numpy() for w in _model(keras.layers.Dense, dtype="mixed_bfloat16")
             .trainable_weights]
    one = _train(keras.layers.Dense, tf.distribute.OneDeviceStrategy("/cpu:0"), data,
                 dtype="mixed_bfloat16")
    plain = _train(keras.layers.Dense, MIRRORED, data, dtype="mixed_bfloat16")
    factored = _train(FactoredDense, MIRRORED, data, dtype="mixed_bfloat16")
    worst = max(_relative_update_diff(plain, one, start),
                _relative_update_diff(factored, one, start),
                _relative_update_diff(factored, plain, start))
    assert worst <= 4 * BF16_U, worst
    # Each replica's half batch alone (synchronized but not averaged) is far
    # outside that tolerance: the comparison above can fail.
    x, y = data
    half = _train(keras.layers.Dense, tf.distribute.OneDeviceStrategy("/cpu:0"),
                  (x.reshape(-1, 2, 4, 24)[:, 0].reshape(-1, 24),
                   y.reshape(-1, 2, 4)[:, 0].reshape(-1)), dtype="mixed_bfloat16")
    assert _relative_update_diff(half, one, start) > 10 * 4 * BF16_U


def test_bf16_all_gather_is_bit_exact():
    """Every one of the 65 536 bf16 bit patterns (NaNs, infinities, subnormals,
    -0) comes back from the all-gather unchanged, from both replicas, in order."""
    bits = np.arange(2**16, dtype=np.uint16).reshape(2, -1)  # row 0 for replica 0

    def gather():
        ctx = tf.distribute.get_replica_context()
        mine = tf.bitcast(tf.constant(bits)[ctx.replica_id_in_sync_group][None],
                          tf.bfloat16)
        gathered = factored_dense._all_gather_rows(ctx, mine)  # pylint: disable=protected-access
        return tf.bitcast(gathered, tf.uint16)

    for result in MIRRORED.experimental_local_results(MIRRORED.run(tf.function(gather))):
        assert result.dtype == tf.uint16
        np.testing.assert_array_equal(result.numpy(), bits)
