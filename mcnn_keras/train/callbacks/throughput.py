"""Measures training images per second and shows it in the progress bar.

`images_per_s` is added to the batch logs (so Keras' progress bar prints it)
and to the epoch logs, together with `wall_s`, the time since training began.
The first step of a `fit` (graph tracing) is excluded from the rate.

Usage:

    model.fit(ds, callbacks=[Throughput(global_batch_size=64)], ...)
"""

import time

import keras


class Throughput(keras.callbacks.Callback):
    """Adds `images_per_s` (and `wall_s` at epoch end) to the logs."""

    def __init__(self, global_batch_size, clock=time.perf_counter):
        super().__init__()
        if not isinstance(global_batch_size, int) or global_batch_size < 1:
            raise ValueError(f"global_batch_size must be an integer >= 1, got "
                             f"{global_batch_size!r}")
        if not callable(clock):
            raise ValueError(f"clock must be callable (-> seconds), got {clock!r}")
        self.global_batch_size = global_batch_size
        self._clock = clock
        self._train_start = None

    def on_train_begin(self, logs=None):
        self._train_start = self._clock()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._clock()
        self._timed_start = None
        self._timed_steps = 0
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        now = self._last_batch_end = self._clock()
        self._steps += 1
        if self._timed_start is None:  # skip the first step: it includes tracing
            self._timed_start = now
        else:
            self._timed_steps += 1
        if logs is not None:
            logs["images_per_s"] = self._rate(now)

    def _rate(self, now):
        if self._timed_steps:
            return self._timed_steps * self.global_batch_size / (now - self._timed_start)
        return self._steps * self.global_batch_size / max(now - self._epoch_start, 1e-9)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._steps:
            # The rate covers training steps only, not validation at epoch end.
            logs["images_per_s"] = self._rate(self._last_batch_end)
            logs["wall_s"] = self._clock() - self._train_start
