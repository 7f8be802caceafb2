"""The global step, read from the optimizer once and then counted on the host.

Reading `optimizer.iterations` back from TensorFlow after every batch costs
a host sync per step, so callbacks that need the step read it once, when
training begins (a run resumed from a checkpoint continues from its step),
and add one after every finished batch. This base class is the one place
that does it; `StepLearningRateScheduler` and `PeriodicCheckpoint` derive
from it.

Usage:

    class EveryTenSteps(HostStepCallback):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)   # self.step += 1
            if self.step % 10 == 0:
                print("global step", self.step)
"""

import keras


class HostStepCallback(keras.callbacks.Callback):
    """`self.step`: updates applied so far (the step of the next update)."""

    def __init__(self):
        super().__init__()
        self.step = None

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
