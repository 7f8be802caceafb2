"""Sets the optimizer's learning rate before every step from the global step.

The rate is a function of the global step, which `HostStepCallback` reads
from the optimizer once (a resumed run continues exactly) and then counts on
the host.
The epoch's last rate is added to the logs as `learning_rate` (Keras' own
name), which the progress bar, TensorBoard and the metrics file pick up.

Usage:

    schedule = LinearScalingSchedule(base_lr=1e-3, global_batch=64,
                                     reference_batch_size=8, total_steps=1000)
    model.fit(ds, callbacks=[StepLearningRateScheduler(schedule)], ...)
"""

from mcnn_keras.train.callbacks.host_step import HostStepCallback


class StepLearningRateScheduler(HostStepCallback):
    """Applies `schedule(step) -> float` at the start of every training batch."""

    def __init__(self, schedule):
        super().__init__()
        if not callable(schedule):
            raise ValueError(f"schedule must be callable (step -> learning rate), "
                             f"got {schedule!r}")
        self.schedule = schedule
        self._last_lr = None

    def _apply(self):
        lr = float(self.schedule(self.step))
        if lr != self._last_lr:
            self.model.optimizer.learning_rate.assign(lr)
            self._last_lr = lr

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._last_lr = None
        self._apply()

    def on_train_batch_begin(self, batch, logs=None):
        self._apply()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._last_lr
