"""Checkpoints of model, optimizer and epoch, written so a kill never loses one.

`Checkpointer` wraps `tf.train.Checkpoint` + `tf.train.CheckpointManager`
(which writes the data files first and then replaces the small `checkpoint`
index file atomically, so a kill mid-save leaves the previous checkpoint
intact). In multi-worker training every worker takes part in each save, as
TensorFlow's save protocol requires, but only the chief writes the real
directory; the others write a scratch directory that is deleted afterwards.
Every worker restores the chief's latest checkpoint.

A checkpoint is only used if it reads back whole (`find_newest_intact`:
the index and every tensor, whose CRCs TensorFlow checks), so a damaged
checkpoint never means a silent restart from step 0. Training falls back
to the newest intact checkpoint, with a warning naming each damaged file:
the cost is bounded (the steps since that checkpoint, redone exactly, since
the input stream resumes at any step), and a cluster that restarts the job
by itself would otherwise fail every restart until someone deletes files by
hand. (`restore.latest_checkpoint`, for export and evaluation, refuses
instead: there a fallback would silently change which model is exported.)
If checkpoint files exist but none reads back, restoring fails naming them.
`Checkpointer.save` refuses non-finite weights (`divergence.check_finite`).
When to save is the callback's business (`callbacks/checkpoint.py`).

Usage:

    ckpt = Checkpointer(model, optimizer, "run/checkpoints", write_dir=...)
    start_step = ckpt.restore_latest()
    ckpt.save(step)                         # refuses non-finite weights
    find_newest_intact("run/checkpoints").intact   # ".../ckpt-200" or None
"""

import dataclasses
import logging
import os
import re

import tensorflow as tf

from mcnn_keras.io import atomic
from mcnn_keras.train.callbacks.divergence import check_finite, learning_rate

_LOG = logging.getLogger(__name__)


INDEX = "checkpoint"  # CheckpointManager's index of the checkpoints it keeps


# The files of CheckpointManager's (default-named) checkpoint of step N.
_NUMBERED = re.compile(r"^(ckpt-(\d+))\.(?:index|data-\d{5}-of-\d{5})$")
# TensorFlow's temporaries of a save (`leftovers` removes a killed save's): the
# shards' directory (`ckpt-N_temp/part-...`), a bundle file being written
# (`...tempstate<n>`), the index being replaced (`checkpoint.tmp<hex>`).
TEMPORARY = re.compile(r"^ckpt-\d+(?:_temp|\.(?:index|data-\d{5}-of-\d{5})"
                       r"\.tempstate\d+)$|^checkpoint\.tmp[0-9a-f]{32}$")
TEMPORARY_PART = re.compile(r"^part-\d{5}-of-\d{5}\.(?:index|data-\d{5}-of-\d{5})"
                            r"(?:\.tempstate\d+)?$")


@dataclasses.dataclass(frozen=True)
class Found:
    """What `find_newest_intact` found in a checkpoint directory.

    `intact`: the newest checkpoint prefix that reads back whole, or None;
    `damaged`: ((file, reason), ...) for the index and every checkpoint newer
    than `intact` that does not; `older`: the prefixes older than `intact`
    (not read).
    """

    intact: str = None
    damaged: tuple = ()
    older: tuple = ()


def check_intact(prefix):
    """None if checkpoint `prefix` reads back whole, else (damaged file, reason)."""
    if not tf.io.gfile.exists(f"{prefix}.index"):
        return f"{prefix}.index", "missing"
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        return f"{prefix}.index", _first_line(e)
    try:
        for key in reader.get_variable_to_dtype_map():
            reader.get_tensor(key)  # checks size and CRC of every tensor
    except (tf.errors.OpError, IndexError, ValueError) as e:  # IndexError: truncated
        directory, name = os.path.split(prefix)
        data = sorted(os.path.join(directory, n) for n in tf.io.gfile.listdir(directory or ".")
                      if n.startswith(f"{name}.data-"))
        return ", ".join(data) or f"{prefix}.data-*", _first_line(e)
    return None


def _first_line(error):
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_index(directory):
    """(CheckpointState or None, (index path, reason) or None if it is sound)."""
    path = os.path.join(directory, INDEX)
    if not tf.io.gfile.exists(path):
        return None, (path, "missing")
    try:  # TensorFlow itself ignores an unparsable index (and restarts from step 0)
        state = tf.train.get_checkpoint_state(directory)
    except ValueError as e:  # parsed, but names no checkpoint
        return None, (path, _first_line(e))
    return state, None if state else (path, "unreadable")


def find_newest_intact(directory):
    """The newest checkpoint in `directory` that reads back whole (a `Found`).

    Candidates are the prefixes named by the index and by the checkpoint files
    themselves, newest (highest step number) first, so that a garbled or lost
    index, or an index naming a missing checkpoint, cannot hide the others.
    Reads the newest candidates until one is intact. The one place that
    decides which checkpoint training, export and evaluation use.
    """
    if not tf.io.gfile.isdir(directory):
        return Found()
    prefixes = {}
    for name in tf.io.gfile.listdir(directory):
        match = _NUMBERED.match(name)
        if match:
            prefixes[os.path.join(directory, match.group(1))] = int(match.group(2))
    if not prefixes and not tf.io.gfile.exists(os.path.join(directory, INDEX)):
        return Found()  # nothing was ever saved here
    state, index_problem = _read_index(directory)
    for prefix in [state.model_checkpoint_path, *state.all_model_checkpoint_paths] \
            if state else []:
        match = re.search(r"-(\d+)$", prefix)
        prefixes.setdefault(prefix, int(match.group(1)) if match else -1)
    damaged = [index_problem] if index_problem else []
    newest_first = sorted(prefixes, key=lambda p: (prefixes[p], p), reverse=True)
    for i, prefix in enumerate(newest_first):
        problem = check_intact(prefix)
        if problem is None:
            return Found(prefix, tuple(damaged), tuple(newest_first[i + 1:]))
        damaged.append(problem)
    return Found(None, tuple(damaged), ())


def _rewrite_index(directory, found):
    """A fresh index (latest: `found.intact`), so that the manager rotates the old ones.

    The text form of TensorFlow's CheckpointState, with relative names as
    the manager writes them; the timestamps (the files' mtimes) put them
    under the manager's rotation.
    """
    names = [os.path.basename(p) for p in reversed(found.older)
             if tf.io.gfile.exists(f"{p}.index")] + [os.path.basename(found.intact)]
    times = [tf.io.gfile.stat(os.path.join(directory, f"{n}.index")).mtime_nsec / 1e9
             for n in names]
    lines = [f'model_checkpoint_path: "{names[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{n}"' for n in names]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in times]
    lines += [f"last_preserved_timestamp: {min(times) - 1!r}"]
    atomic.write_text_atomic(os.path.join(directory, INDEX), "\n".join(lines) + "\n")


class Checkpointer:
    """Saves and restores model + optimizer (+ epoch) in `directory`."""

    def __init__(self, model, optimizer, directory, write_dir=None, max_to_keep=3):
        self.directory = directory
        self.write_dir = write_dir or directory
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                              epoch=self.epoch)
        self.optimizer = optimizer
        self._variables = list(model.weights) + list(optimizer.variables)
        self.max_to_keep = max_to_keep
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir,
                                                  max_to_keep=max_to_keep)
        self._saved = None  # (step, path) of the checkpoint restored or last saved

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())

    def restore_latest(self):
        """Restores the chief's newest intact checkpoint, if any; returns the global step.

        Damaged newer checkpoints (and a damaged index) are skipped with a
        warning naming each; ValueError if checkpoint files exist but none
        reads back whole.
        """
        found = find_newest_intact(self.directory)
        for path, reason in found.damaged:
            _LOG.warning("damaged checkpoint file %s (%s)", path, reason)
        if found.intact is None:
            if found.damaged:
                raise ValueError(f"no checkpoint in {self.directory} can be restored: "
                                 + "; ".join(f"{p}: {r}" for p, r in found.damaged)
                                 + " (move them away to start from scratch)")
            return self.step
        self.checkpoint.restore(found.intact).assert_existing_objects_matched()
        if found.damaged:
            _LOG.warning("resuming from %s, the newest intact checkpoint (step %d)",
                         found.intact, self.step)
            if (self.write_dir == self.directory  # the chief's own directory
                    and found.damaged[0][0] == os.path.join(self.directory, INDEX)):
                _rewrite_index(self.directory, found)
                self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir,
                                                          max_to_keep=self.max_to_keep)
        self._saved = (self.step, found.intact)
        return self.step

    def save(self, epoch):
        """Saves at the current step unless this step was saved or restored already.

        Raises `divergence.DivergenceError`, writing nothing, if any weight or
        optimizer variable is not finite. (The same decision on every worker:
        their copies are identical.)
        """
        if self._saved and self._saved[0] == self.step:
            return self._saved[1]
        check_finite(self._variables, self.step, learning_rate(self.optimizer))
        self.epoch.assign(epoch)
        path = self.manager.save(checkpoint_number=self.step)
        self._saved = (self.step, path)
        return path
