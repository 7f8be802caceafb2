"""Saving every N steps, at each epoch end and on SIGTERM: the checkpoint callback.

`PeriodicCheckpoint` saves (through a `checkpoints.Checkpointer`) every
`every_n_steps` global steps and at each epoch end. On SIGTERM (what Slurm
and Kubernetes send on preemption) it saves after the current step and raises
`Preempted` out of `fit` at once: stopping the Keras way (`stop_training`)
would still validate and log the unfinished epoch, minutes at full
resolution, while the grace period before SIGKILL is 30 s by default on both.
With several workers, pass `agree` (e.g. `lambda flag:
distribute.any_worker(strategy, flag)`): the workers then vote after every
step, so that a SIGTERM reaching them a step apart still makes all of them,
the chief included, save and stop at the same step instead of leaving one
waiting in an all-reduce.

Usage:

    ckpt = checkpoints.Checkpointer(model, optimizer, "run/checkpoints", write_dir=...)
    try:
        model.fit(..., callbacks=[PeriodicCheckpoint(ckpt, every_n_steps=100)])
    except Preempted as e:     # SIGTERM: e.path is the checkpoint to resume from
        sys.exit(143)
"""

import logging
import signal

from mcnn_keras.train.callbacks.host_step import HostStepCallback

_LOG = logging.getLogger(__name__)


class Preempted(Exception):
    """Raised out of `fit` after the SIGTERM checkpoint is saved."""

    def __init__(self, path, step):
        super().__init__(f"SIGTERM: saved {path} at step {step}; stopping")
        self.path, self.step = path, step


class PeriodicCheckpoint(HostStepCallback):
    """Saves every `every_n_steps` steps, at epoch ends, and on SIGTERM.

    The global step is counted on the host (`HostStepCallback`).
    """

    def __init__(self, checkpointer, every_n_steps=0, save_on_sigterm=True, agree=None):
        super().__init__()
        if not callable(getattr(checkpointer, "save", None)):
            raise ValueError(f"checkpointer must have a save(step) method, got {checkpointer!r}")
        if not isinstance(every_n_steps, int) or every_n_steps < 0:
            raise ValueError(f"every_n_steps must be an integer >= 0 (0: epoch ends only), "
                             f"got {every_n_steps!r}")
        if agree is not None and not callable(agree):
            raise ValueError(f"agree must be callable (flag -> flag of any worker), got {agree!r}")
        self.agree = agree
        self.checkpointer = checkpointer
        self.every_n_steps = every_n_steps
        self.save_on_sigterm = save_on_sigterm
        self.preempted = False
        self._epoch = 0
        self._previous_handler = None

    def _on_sigterm(self, signum, frame):
        self.preempted = True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.save_on_sigterm:
            self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)

    def on_train_end(self, logs=None):
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        step = self.step
        if self.agree is not None and self.save_on_sigterm:
            self.preempted = self.agree(self.preempted)
        if self.preempted:
            path = self.checkpointer.save(self._epoch)
            self.model.stop_training = True
            self.on_train_end()  # fit skips it when a callback raises
            raise Preempted(path, step)
        elif self.every_n_steps and step % self.every_n_steps == 0:
            self.checkpointer.save(self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.checkpointer.save(epoch + 1)
