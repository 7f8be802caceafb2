"""Leftovers of earlier attempts: what killed or failed runs left, and removing it.

The chief's training run calls `remove_leftovers` before it starts (holding
the run's lock): `atomic` temporaries in the run directory, TensorFlow's
checkpoint temporaries in checkpoints/, and the scratch directories of this
host's non-chief workers whose process is gone. A scratch directory
(`distribute.writer_dir`) is named with `scratch_prefix`, so its owner's pid
and host say whether it is dead.

Usage:

    tempfile.mkdtemp(prefix=scratch_prefix("worker", 1))   # a non-chief's scratch dir
    remove_leftovers(run_dir.RunDir("runs/demo"))          # the paths it removed
"""

import logging
import os
import re
import shutil
import socket
import tempfile

from mcnn_keras.io import atomic
from mcnn_keras.io import storage
from mcnn_keras.train import checkpoints

_LOG = logging.getLogger(__name__)

# A non-chief's scratch dir (`distribute.writer_dir`) carries its owner's pid and
# host, so that a live worker's dir is never taken for a dead one's.
_SCRATCH = re.compile(r"^mcnn-[a-z]+\d+-scratch-(\d+)@(.+)-[a-z0-9_]+$")


def scratch_prefix(task_type, task_index):
    """The name prefix of this process' scratch dir (see `remove_leftovers`)."""
    return f"mcnn-{task_type}{task_index}-scratch-{os.getpid()}@{socket.gethostname()}-"


def _is_checkpoint_temporary(path):
    name = os.path.basename(path)
    if not checkpoints.TEMPORARY.match(name):
        return False
    if name.endswith("_temp"):  # a directory holding nothing but shard parts
        return os.path.isdir(path) and all(checkpoints.TEMPORARY_PART.match(n)
                                             for n in os.listdir(path))
    return os.path.isfile(path)


def _is_dead_workers_scratch(path):
    match = _SCRATCH.match(os.path.basename(path))
    if (not match or not os.path.isdir(path) or os.path.islink(path)
            or os.stat(path).st_uid != os.getuid()
            or match.group(2) != socket.gethostname()):  # another host's: cannot tell
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return False


def _listing(directory):
    return ([os.path.join(directory, n) for n in sorted(os.listdir(directory))]
            if os.path.isdir(directory) else [])


def remove_leftovers(run=None, scratch_root=None):
    """Removes what killed or failed earlier attempts left; returns the paths removed.

    Only our own kinds, never a user's file: in `run` (a RunDir; the chief
    calls this holding the run's lock, so no writer is at work there) the
    `atomic` temporaries (`.export.tmp-<hex>`, ...) and TensorFlow's
    checkpoint temporaries in checkpoints/ (a `ckpt-N_temp` directory only if
    it holds nothing but checkpoint parts); in `scratch_root` (default: the
    temp dir) the scratch dirs of this host's workers whose process is gone.
    Says what it removed in one info line. Object storage is skipped (its
    temporaries are staged locally).
    """
    removed = []
    if run is not None and not storage.is_remote(run.path) and os.path.isdir(run.path):
        removed += atomic.remove_temporaries(run.path)
        removed += [p for p in _listing(run.checkpoints) if _is_checkpoint_temporary(p)]
    removed += [p for p in _listing(scratch_root or tempfile.gettempdir())
                if _is_dead_workers_scratch(p)]
    for path in removed:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)  # a peer may be removing it too
        elif os.path.lexists(path):
            os.remove(path)
    if removed:
        _LOG.info("removed %d leftover(s) of earlier runs: %s", len(removed),
                  ", ".join(removed))
    return removed
