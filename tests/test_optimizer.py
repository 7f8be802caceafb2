"""The fused momentum update against Keras' own SGD."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from mcnn_keras.model.optimizer import SGD


def _run(optimizer, steps=5):
    rng = np.random.default_rng(1)
    variables = [keras.Variable(rng.normal(size=shape).astype("float32"))
                 for shape in ((300, 7), (7,))]
    grads = [[tf.constant(rng.normal(size=v.shape).astype("float32")) for v in variables]
             for _ in range(steps)]
    apply = tf.function(lambda g: optimizer.apply_gradients(zip(g, variables)))
    for step, g in enumerate(grads):
        optimizer.learning_rate.assign(0.1 / (step + 1))  # as the LR callback does
        apply(g)
    return [v.numpy() for v in variables] + [m.numpy() for m in getattr(optimizer, "momentums", [])]


@pytest.mark.parametrize("nesterov", [True, False])
def test_fused_update_matches_keras_sgd(nesterov):
    fused = _run(SGD(0.1, momentum=0.9, nesterov=nesterov))
    reference = _run(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov))
    start = _run(keras.optimizers.SGD(0.0, momentum=0.9), steps=0)
    assert len(fused) == len(reference) == 4  # 2 weights, 2 momentums
    for a, b in zip(fused, reference):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(fused[0], start[0])  # the weights moved


def test_fused_kernel_is_used():
    optimizer = SGD(0.1, momentum=0.9, nesterov=True)
    variable = keras.Variable(np.zeros(3, "float32"))
    optimizer.build([variable])
    graph = tf.function(lambda g: optimizer.apply_gradients([(g, variable)])) \
        .get_concrete_function(tf.TensorSpec([3], tf.float32)).graph
    assert "ResourceApplyKerasMomentum" in {op.type for op in graph.get_operations()}


def test_plain_sgd_without_momentum_still_works():
    weights = _run(SGD(0.1), steps=2)[0]
    reference = _run(keras.optimizers.SGD(0.1), steps=2)[0]
    np.testing.assert_allclose(weights, reference, rtol=1e-6)
