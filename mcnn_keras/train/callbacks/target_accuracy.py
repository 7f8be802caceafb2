"""Stops training once validation top-1 reaches a target; records time-to-train.

Under MultiWorkerMirroredStrategy the validation metrics are global (reduced
across workers), so every worker stops after the same epoch.

Usage:

    stop = StopAtTargetAccuracy(0.99)
    model.fit(ds, validation_data=val, callbacks=[stop], ...)
    print(stop.reached_epoch, stop.time_to_target_s)
"""

import logging
import time

import keras

_LOG = logging.getLogger(__name__)
# Keras computes top-1 in float32: 247 of 260 right is 0.949999988, which must
# count as reaching 0.95. One float32 step near 1 is 6e-8; no validation set
# of under a million images has accuracies closer together than 1e-6.
TOLERANCE = 1e-6


def reaches(value, target):
    """Whether an accuracy `value` (a float32 metric) reaches `target`."""
    return value is not None and value >= target - TOLERANCE


class StopAtTargetAccuracy(keras.callbacks.Callback):
    """Sets `model.stop_training` when `logs[monitor] >= target`."""

    def __init__(self, target, monitor="val_top1", clock=time.perf_counter):
        super().__init__()
        if not 0 < target <= 1:
            raise ValueError(f"target accuracy must be in (0, 1], got {target}")
        self.target, self.monitor, self._clock = target, monitor, clock
        self.reached_epoch = None
        self.time_to_target_s = None

    def on_train_begin(self, logs=None):
        self._start = self._clock()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self.reached_epoch is not None or not reaches(value, self.target):
            return
        self.reached_epoch = epoch
        self.time_to_target_s = self._clock() - self._start
        logs["time_to_target_s"] = self.time_to_target_s
        _LOG.info("%s %.4f >= target %s: stopping after epoch %d, %.1f s of training",
                     self.monitor, value, self.target, epoch + 1, self.time_to_target_s)
        self.model.stop_training = True
