"""Checkpoints of model, optimizer and epoch every N steps, with exact resume.

`Checkpointer` wraps `tf.train.Checkpoint` + `tf.train.CheckpointManager`
(which writes the data files first and then replaces the small `checkpoint`
index file atomically, so a kill mid-save leaves the previous checkpoint
intact). In multi-worker training every worker takes part in each save, as
TensorFlow's save protocol requires, but only the chief writes the real
directory; the others write a scratch directory that is deleted afterwards.
Every worker restores the chief's latest checkpoint.

`PeriodicCheckpoint` saves every `every_n_steps` global steps and at each
epoch end. On SIGTERM (what Slurm and Kubernetes send on preemption) it saves
after the current step and stops training. With several workers, pass
`agree` (e.g. `lambda flag: distribute.any_worker(strategy, flag)`): the
workers then vote after every step, so that a SIGTERM reaching them a step
apart still makes all of them, the chief included, save and stop at the same
step instead of leaving one waiting in an all-reduce.

Usage:

    ckpt = Checkpointer(model, optimizer, "run/checkpoints", write_dir=...)
    start_step = ckpt.restore_latest()
    model.fit(..., callbacks=[PeriodicCheckpoint(ckpt, every_n_steps=100)])
"""

import logging
import signal

import keras
import tensorflow as tf

_LOG = logging.getLogger(__name__)


class Checkpointer:
    """Saves and restores model + optimizer (+ epoch) in `directory`."""

    def __init__(self, model, optimizer, directory, write_dir=None, max_to_keep=3):
        self.directory = directory
        self.write_dir = write_dir or directory
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                              epoch=self.epoch)
        self.optimizer = optimizer
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir,
                                                  max_to_keep=max_to_keep)

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())

    def restore_latest(self):
        """Restores the chief's latest checkpoint if any; returns the global step."""
        latest = tf.train.latest_checkpoint(self.directory)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        return self.step

    def save(self, epoch):
        """Saves at the current step unless a checkpoint of this step exists."""
        latest = self.manager.latest_checkpoint
        if latest and latest.endswith(f"-{self.step}"):
            return latest
        self.epoch.assign(epoch)
        return self.manager.save(checkpoint_number=self.step)


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves every `every_n_steps` steps, at epoch ends, and on SIGTERM."""

    def __init__(self, checkpointer, every_n_steps=0, save_on_sigterm=True, agree=None):
        super().__init__()
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
        if self.save_on_sigterm:
            self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)

    def on_train_end(self, logs=None):
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.checkpointer.step
        if self.agree is not None and self.save_on_sigterm:
            self.preempted = self.agree(self.preempted)
        if self.preempted:
            path = self.checkpointer.save(self._epoch)
            _LOG.warning("SIGTERM: saved %s at step %d; stopping", path, step)
            self.model.stop_training = True
        elif self.every_n_steps and step % self.every_n_steps == 0:
            self.checkpointer.save(self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.checkpointer.save(epoch + 1)
