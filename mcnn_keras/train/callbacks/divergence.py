"""Divergence is a failure: stop at the first non-finite loss, never save NaNs.

`StopOnDivergence` raises `DivergenceError` from `on_train_batch_end` as soon
as the loss Keras logs is NaN or infinite, naming the global step, the epoch
and the learning rate of that step. Keras' own `TerminateOnNaN` only sets
`stop_training`: the run would then end "successfully", with epoch-end
checkpoints and an export of the diverged model. Raising skips every later
callback of the step (put this one first), the epoch end and the export.

`check_finite` is the other half: `Checkpointer.save` calls it so that no
checkpoint (periodic, epoch end, SIGTERM) can hold non-finite weights, even
when the update of the last step broke the weights while its loss (computed
before the update) was still finite. A non-finite weight makes the next
step's loss non-finite, so divergence stops training within one step.

Several workers decide alike without talking: the logged loss is the
all-reduced mean over all replicas (`keras_multiworker_fix`; a NaN on one
replica is a NaN in the mean) and the weights are identical on every worker,
so all of them raise at the same step, before any collective of the
callbacks after this one.

Usage:

    try:
        model.fit(..., callbacks=[StopOnDivergence(), ...])   # first in the list
    except DivergenceError as e:  # "training diverged at step 11 (epoch 3, ...): loss is nan"
        raise e.with_context(hint="lower the learning rate") from None
"""

import math

import keras
import tensorflow as tf


class DivergenceError(ValueError):
    """Training produced a non-finite loss or non-finite weights.

    One line: the step (updates done), the epoch (1-based) and the learning
    rate of that step when known, what was not finite, and an optional hint.
    """

    def __init__(self, detail, step, learning_rate, epoch=None, hint=""):
        self.detail, self.step, self.learning_rate = detail, step, learning_rate
        self.epoch, self.hint = epoch, hint
        where = f"epoch {epoch}, " if epoch else ""
        super().__init__(f"training diverged at step {step} ({where}learning rate "
                         f"{learning_rate:g}): {detail}{'; ' + hint if hint else ''}")

    def with_context(self, epoch=None, hint=""):
        """The same error with the epoch filled in (if unknown) and a hint added."""
        return DivergenceError(self.detail, self.step, self.learning_rate,
                               self.epoch or epoch, hint)


def learning_rate(optimizer):
    """The optimizer's current learning rate as a float."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class StopOnDivergence(keras.callbacks.Callback):
    """Raises `DivergenceError` after the first step whose logged loss is not finite."""

    def __init__(self, monitor="loss"):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must name a log entry (e.g. 'loss'), got {monitor!r}")
        self.monitor = monitor
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or math.isfinite(float(value)):
            return
        optimizer = self.model.optimizer
        raise DivergenceError(  # iterations: updates done, this step's included
            f"{self.monitor} is {float(value)}",
            int(optimizer.iterations.numpy()), learning_rate(optimizer), self._epoch + 1)


def check_finite(variables, step, lr):
    """Raises `DivergenceError` if any floating-point variable holds a NaN or Inf.

    `variables`: Keras or TensorFlow variables (under a strategy, each
    worker checks its own copy; the copies are identical). `step`, `lr`:
    for the message.
    """
    bad = [getattr(v, "path", v.name) for v in variables if tf.as_dtype(v.dtype).is_floating
           and not bool(tf.reduce_all(tf.math.is_finite(v)))]
    if bad:
        raise DivergenceError(
            f"non-finite values in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}; "
            f"refused to checkpoint them", step, lr)
