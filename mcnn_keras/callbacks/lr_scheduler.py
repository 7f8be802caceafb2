"""Sets the optimizer's learning rate before every step from the global step.

The rate is a function of `optimizer.iterations` (not of a counter kept by the
callback), so it is exact after a resume from a checkpoint. The epoch's last
rate is added to the logs as `lr`, which the progress bar, TensorBoard and the
metrics file pick up.

Usage:

    schedule = LinearScalingSchedule(base_lr=1e-3, global_batch=64,
                                     reference_batch=8, total_steps=1000)
    model.fit(ds, callbacks=[StepLearningRateScheduler(schedule)], ...)
"""

import keras


class StepLearningRateScheduler(keras.callbacks.Callback):
    """Applies `schedule(step) -> float` at the start of every training batch."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self._last_lr = None

    def _apply(self):
        optimizer = self.model.optimizer
        lr = float(self.schedule(int(optimizer.iterations.numpy())))
        if lr != self._last_lr:
            optimizer.learning_rate.assign(lr)
            self._last_lr = lr

    def on_train_begin(self, logs=None):
        self._last_lr = None
        self._apply()

    def on_train_batch_begin(self, batch, logs=None):
        self._apply()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self.model.optimizer.learning_rate.numpy())
