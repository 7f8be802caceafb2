"""Sufficient-factor gradients: data parallelism without all-reducing a huge dense kernel.

At 1024 x 1280 the M-CNN's first dense layer (81 920 -> 512) holds 98.5 % of
the weights, so plain data parallelism all-reduces a 160 MiB gradient every
step. That gradient is a sum of outer products over the global batch,
dW = X^T dY, so the workers can instead all-gather the *factors* X (B x 81 920)
and dY (B x 512), about 330 KB per image, and each compute the same sum
(sufficient-factor broadcasting: Xie et al., arXiv:1511.08486; Zhang et al.,
Poseidon, USENIX ATC 2017). At global batch G the factors are
G x (fan_in + fan_out) values against fan_in x fan_out for the gradient:
about 60x less traffic at G = 8, break-even near G = 500.

Two pieces, each harmless alone:

- `FactoredDense`: a `keras.layers.Dense` whose kernel gradient, when
  several replicas train in sync, is X^T dY / n computed from all-gathered
  factors. Its kernel's whole gradient (this term plus the weight decay term,
  which only depends on the mirrored kernel) is then the same on every
  replica; the layer marks the kernel so (`has_replica_invariant_gradient`).
- `SkipsInvariantGradientsInAllReduce`: an optimizer mixin (used by
  `mcnn_keras.model.optimizer.SGD`) whose all-reduce (a SUM over replicas) skips
  marked variables and multiplies their gradient by n instead, which is the
  same sum without communication. Without it the marked gradients are simply
  all-reduced: still correct, only slower.

The result equals plain data parallelism up to float summation order
(`tests/test_factored_dense.py`, and 2 workers x b against 1 worker x 2b in
`tests/test_multiworker.py`; under mixed_bfloat16, up to bf16 rounding of the
sums, in `tests/test_multiworker_bf16.py`). bfloat16 factors are all-gathered
as their raw bits (`_all_gather_rows`). Out of a multi-replica context the
layer is a plain `Dense`; checkpoints and exports are the same as with `Dense`.

Usage:

    x = FactoredDense(512, activation="relu")(features)  # in the model
    model.compile(optimizer=mcnn_keras.model.optimizer.SGD(0.01, momentum=0.9), ...)
"""

import keras
import tensorflow as tf

# Whether to use factors is arithmetic on the layer's size (topology.py).

_INVARIANT = "_mcnn_replica_invariant_gradient"


def mark_replica_invariant_gradient(variable):
    """Declares that `variable`'s gradient is identical on every replica."""
    for target in (variable, getattr(variable, "value", None)):
        if target is not None:
            setattr(target, _INVARIANT, True)


def has_replica_invariant_gradient(variable):
    """True for variables marked by `mark_replica_invariant_gradient`."""
    return getattr(variable, _INVARIANT, False)


def _num_replicas():
    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else 1


def _all_gather_rows(context, value):
    """`context.all_gather(value, axis=0)`, also for bfloat16 (bit-exact).

    TensorFlow's all-gather (`CollectiveGatherV2`, TF 2.21) takes float32,
    float16, float64, int32 and int64 only: no bfloat16 (nor int16/uint16),
    so under `mixed_bfloat16` the factors failed with "DataType bfloat16 not
    in list of allowed values". A gather only moves bytes, so we gather the
    raw bits: bitcast bf16 -> float16 (same 16 bits; a bitcast copies
    nothing and computes nothing), gather, bitcast back. Lossless (all 65 536
    bit patterns come back, `tests/test_factored_dense.py`), and it moves
    half the bytes of the other lossless way, a float32 round trip. Chosen
    for that, measured with 2 pinned workers over 127.0.0.1 (2-vCPU AMD
    EPYC, docs/PERFORMANCE.md), gathering G x 82 432 values, median of 60:
    G = 16: 4.3 ms bitcast against 6.9 ms via float32 (G = 32: 7.9 against
    14.1 ms). The casts themselves are cheap (~0.4 ms at G = 16): the float32
    way loses on twice the bytes. Gathering int32 pairs instead of float16
    measured the same (same bytes).
    """
    if value.dtype != tf.bfloat16:
        return context.all_gather(value, axis=0)
    gathered = context.all_gather(tf.bitcast(value, tf.float16), axis=0)
    return tf.bitcast(gathered, tf.bfloat16)


@tf.custom_gradient
def _factored_matmul(inputs, kernel):
    """inputs @ kernel; the kernel gradient comes from all-gathered factors."""
    def grad(upstream):
        context = tf.distribute.get_replica_context()
        fan_in = inputs.shape[-1]
        # One collective for both factors: [global batch, fan_in + fan_out].
        factors = _all_gather_rows(context, tf.concat([inputs, upstream], axis=1))
        # The 1/n goes on the small factor, not on the fan_in x fan_out result.
        scale = tf.cast(1 / context.num_replicas_in_sync, upstream.dtype)
        kernel_grad = tf.matmul(factors[:, :fan_in], factors[:, fan_in:] * scale,
                                transpose_a=True)
        return tf.matmul(upstream, kernel, transpose_b=True), kernel_grad
    return tf.matmul(inputs, kernel), grad


@keras.saving.register_keras_serializable(package="mcnn_keras")
class FactoredDense(keras.layers.Dense):
    """`Dense` on 2-D inputs whose kernel gradient is synchronized by factors."""

    def build(self, input_shape):
        super().build(input_shape)
        mark_replica_invariant_gradient(self.kernel)

    def call(self, inputs, training=None):
        if (_num_replicas() == 1 or self.lora_enabled or self.quantization_mode
                or len(inputs.shape) != 2):
            return super().call(inputs, training=training)
        x = _factored_matmul(inputs, keras.ops.cast(self.kernel, inputs.dtype))
        if self.bias is not None:
            x = keras.ops.add(x, self.bias)
        return self.activation(x) if self.activation is not None else x


class SkipsInvariantGradientsInAllReduce:
    """Optimizer mixin: replica-invariant gradients are multiplied, not all-reduced.

    Overrides the TensorFlow backend's `_all_reduce_sum_gradients` (Keras 3).
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        pairs = list(grads_and_vars)
        varying = [p for p in pairs if not has_replica_invariant_gradient(p[1])]
        reduced = iter(super()._all_reduce_sum_gradients(varying))
        n = _num_replicas()
        return [(g if g is None or n == 1 else g * tf.cast(n, g.dtype), v)
                if has_replica_invariant_gradient(v) else next(reduced)
                for g, v in pairs]
