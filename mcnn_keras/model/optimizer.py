"""The M-CNN's optimizer: momentum SGD with one fused update kernel per variable.

Keras 3's SGD updates a variable with about six element-wise TensorFlow ops,
each a full pass over memory; for the M-CNN's 160 MiB dense kernel that is
85 ms per step on one core here. TensorFlow's `ResourceApplyKerasMomentum`
kernel computes the very same formula (Keras' momentum and Nesterov update)
in one pass: 32 ms. That matters most with several workers per node, where
every worker updates all weights on its own cores. This class also leaves
sufficient-factor gradients out of the all-reduce (`factored_dense.py`).

Usage:

    optimizer = mcnn_keras.model.optimizer.SGD(0.01, momentum=0.9, nesterov=True)
    model.compile(optimizer=optimizer, ...)
"""

import keras
import tensorflow as tf

from mcnn_keras.model.factored_dense import SkipsInvariantGradientsInAllReduce


@keras.saving.register_keras_serializable(package="mcnn_keras")
class SGD(SkipsInvariantGradientsInAllReduce, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with a fused momentum update (same formula)."""

    def update_step(self, gradient, variable, learning_rate):
        if (self.momentum == 0 or isinstance(gradient, tf.IndexedSlices)
                or not hasattr(variable, "handle")):
            return super().update_step(gradient, variable, learning_rate)
        # accum = accum * momentum - lr * grad
        # var += accum (or, Nesterov: accum * momentum - lr * grad)
        momentum = self.momentums[self._get_variable_index(variable)]
        dtype = variable.dtype
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=momentum.value.handle,
            lr=tf.cast(learning_rate, dtype), grad=tf.cast(gradient, dtype),
            momentum=tf.cast(self.momentum, dtype), use_nesterov=self.nesterov)
