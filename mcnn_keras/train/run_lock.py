"""One training run per directory: an exclusive lock on `<model_dir>/run.lock`.

The chief holds it for the whole run (`training.train`), so a second run on
the same directory fails at once with the holder's pid, host and start time
instead of two runs interleaving checkpoints.

Usage:

    with run_lock.hold(RunDir("runs/demo")):   # ValueError naming the holder if taken
        ...                                    # train

The lock is an `fcntl.flock` (local file systems, NFSv4); the kernel drops it
when its holder dies, so a killed run's lock file is taken over (reported at
info level). Object storage (`gs://`, `s3://`) and file systems that cannot
lock only warn.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket

from mcnn_keras.io import storage
from mcnn_keras.io.output_dirs import make_output_dir

_LOG = logging.getLogger(__name__)

# flock errors of file systems that cannot lock (e.g. Lustre without -o flock).
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


def _read_holder(fd):
    """The holder record of an open lock file ({} if empty or unreadable)."""
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _describe(holder):
    if not holder:
        return "a process that has not recorded itself yet"
    return (f"pid {holder.get('pid')} on host {holder.get('host')} "
            f"since {holder.get('since')}")


def _acquire(path, directory):
    """Locks the file `path` (created if missing); returns its fd, or None
    where the file system cannot lock."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a run that failed at once removed its new, empty dir
            os.makedirs(directory, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_holder(fd))
            os.close(fd)
            raise ValueError(f"--model_dir={directory} is locked by {holder}: another run "
                             f"is training there; wait for it or use another --model_dir"
                             ) from None
        except OSError as e:
            os.close(fd)
            if e.errno not in _NO_LOCKS:
                raise
            _LOG.warning("cannot lock %s (%s): make sure no other run uses this model_dir",
                         path, e.strerror)
            return None
        # The previous holder may have removed the file between our open and
        # flock: then we locked a deleted file; start over with the path's.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    stale = _read_holder(fd)
    if stale:  # its holder died without releasing it (the kernel dropped the flock)
        _LOG.info("%s: previous holder %s is gone; taking the lock", path, _describe(stale))
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, (record + "\n").encode(), 0)
    os.fsync(fd)
    return fd


def _release(path, fd):
    """Removes the lock file while still holding it, then unlocks (see _acquire)."""
    with contextlib.suppress(OSError):
        os.remove(path)
    os.close(fd)


@contextlib.contextmanager
def hold(run):
    """Holds the lock of `run` (a `run_dir.RunDir`) for the block.

    Creates the directory (`make_output_dir`). A run already holding it:
    ValueError naming its pid, host and start time. A lock file whose holder
    died (kill -9, a lost node): reported at info level and taken. Released
    (the file removed) on leaving the block, on errors too; a directory it
    created is removed again if left empty (a run that failed at once).
    """
    if storage.is_remote(run.path):
        _LOG.warning("%s is object storage, which has no locks: make sure no other "
                     "run uses this model_dir", run.path)
        yield
        return
    created = not os.path.lexists(run.path)
    make_output_dir(run.path, "model_dir")
    fd = _acquire(run.lock_file, run.path)
    try:
        yield
    finally:
        if fd is not None:
            _release(run.lock_file, fd)
        if created:
            with contextlib.suppress(OSError):  # not empty: a run's files
                os.rmdir(run.path)
