"""Atomic file and directory writes: readers see the old or the new, never half.

Every writer of the project goes through here, so there is one temporary-name
scheme, `.<basename>.tmp-<32 hex digits>-<pid>-<host><extension of basename>`
next to the target (same file system, so the final rename is atomic; hidden,
so globs such as `train-*.tfrecord` do not see it; the extension kept, so
np.savez does not append ".npz", matplotlib infers the format and tifffile is
happy; the writer's pid and 8 hex digits of its host name's hash, so that a
live writer's temporary is told from a dead one's; names without them, of
earlier versions, still count), and one cleanup, `remove_temporaries`.

Usage:

    write_json_atomic("run/flags.json", flags)
    with atomic_file("out/illumination.npz") as tmp:   # any writer, any format
        np.savez(tmp, **maps)                          # then it replaces the target
    with atomic_directory("run/export") as tmp:        # build the new dir in tmp
        model.export(tmp)                              # then it replaces run/export
    remove_temporaries("out")   # after a crash: leftovers of the scheme above
    remove_temporaries("out", ["p.csv"])   # a binary about to write out/p.csv

Object storage (`s3://`, `gs://`) has no rename (tf.io.gfile.rename there is
copy + delete, readable half-way). For a path with a scheme, `atomic_file`
yields a local temporary file instead (in $TMPDIR: room for one shard) and
uploads it with one copy when the block ends: a reader sees no object (or the old one) until the upload
completes, then the whole new object, never a part (S3 and GCS publish an
object only when its upload finishes). `atomic_directory` cannot be atomic
there (a directory is many objects): it builds the tree locally, deletes the
old one, then uploads the files, top-level files last (a SavedModel's
saved_model.pb after its variables), so mid-swap a reader finds the directory
missing or incomplete, never a mix of old and new. TensorFlow (tf.io.gfile)
is imported only for such paths, so this module stays importable without it.
"""

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import uuid

from mcnn_keras.io import storage

_LOG = logging.getLogger(__name__)
_TAG = re.compile(r"\.tmp-[0-9a-f]{32}")
_WRITER = re.compile(r"-(\d+)-([0-9a-f]{8})")  # after the tag: "-<pid>-<host hash>"
# Reasons a write fails that lie outside the program: no room, a quota, a
# read-only or denied file system. The user can fix them; no traceback helps.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


class WriteError(OSError):
    """An output could not be written (full disk, quota, read-only): one line
    naming it. The previous version, if any, is untouched; no temporary is left."""

    def __str__(self):
        return self.strerror


def _write_failed(path, error):
    """A WriteError naming `path` for an OSError of `_NO_ROOM`, else None."""
    if not isinstance(error, OSError) or isinstance(error, WriteError):
        return None
    reason = error.errno in _NO_ROOM and os.strerror(error.errno)
    if not reason and "No space left on device" in str(error):  # pyarrow drops the errno
        reason = os.strerror(errno.ENOSPC)
    if not reason:
        return None
    return WriteError(error.errno or errno.ENOSPC, f"{path}: cannot write it ({reason}); "
                      f"the previous version, if any, is untouched")


def _host():
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary_path(path):
    """A fresh temporary name for `path`, in the same directory."""
    directory, name = os.path.split(os.fspath(path))
    return os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}-{os.getpid()}-{_host()}"
                                   f"{os.path.splitext(name)[1]}")


def _parse(name):
    """(target's base name, writer's pid, writer's host hash) if `temporary_path`
    made the base name `name` (pid and host None in the names of earlier
    versions), else None."""
    if not name.startswith("."):
        return None
    # Try every tag position: the target's own name may contain ".tmp-<hex>".
    for m in _TAG.finditer(name):
        if m.start() <= 1:
            continue
        target, rest = name[1:m.start()], name[m.end():]
        extension = os.path.splitext(target)[1]
        writer = _WRITER.match(rest)
        if writer and rest[writer.end():] == extension:
            return target, int(writer.group(1)), writer.group(2)
        if rest == extension:
            return target, None, None
    return None


def is_temporary(name):
    """True if the base name `name` was made by `temporary_path` (ours, not a user's)."""
    return _parse(name) is not None


def _writer_is_alive(pid, host):
    """True only if the writer is provably at work: another live process of this host.

    Our own pid is not: we have not written yet (callers clean before they
    write), so it is a dead process' that had our pid and host (a container's
    entry point, pid 1, restarted under the same host name). An unknown writer
    (another host, or a name of an earlier version) is not either: keeping its
    temporary would keep it forever (a rerun in a new container has a new host
    name), and pulling it from under a live writer on another host only makes
    that writer fail loudly at its rename, the target untouched.
    """
    if pid is None or host != _host() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _fsync(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path):
    if storage.is_remote(path):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _gfile():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.io.gfile


@contextlib.contextmanager
def _local_staging(path):
    """A local temporary (file or directory) of our name scheme for remote `path`."""
    name = os.path.basename(temporary_path(path.rstrip("/")))
    tmp = os.path.join(tempfile.gettempdir(), name)
    try:
        yield tmp
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_file(path):
    """Yields a temporary path to write; on success it replaces `path`.

    The writer must have closed the file when the block ends. The temporary is
    fsynced before the rename (else a crash could leave `path` renamed but
    empty). On any exception, KeyboardInterrupt included, the temporary is
    removed and `path` is untouched. For object storage (`s3://`, `gs://`) the
    temporary is a local file, uploaded with one copy at the end (no rename
    there; see the module docstring for what readers see).
    """
    path = os.fspath(path)
    if storage.is_remote(path):
        with _local_staging(path) as tmp:
            yield tmp
            gfile = _gfile()
            storage.require_filesystem(path)
            gfile.copy(tmp, path, overwrite=True)
        return
    tmp = temporary_path(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        try:  # make the rename itself durable; not every file system can
            _fsync(os.path.dirname(os.path.abspath(path)), directory=True)
        except OSError:
            pass
    except BaseException as e:
        _remove(tmp)
        failed = _write_failed(path, e)
        if failed:
            raise failed from None
        raise


def write_text_atomic(path, text):
    """Writes `text` to `path` (local or object storage) atomically."""
    with atomic_file(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_json_atomic(path, value):
    """Writes `value` as indented, key-sorted JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _upload_tree(local, path):
    """Replaces the remote directory `path` by the local tree `local`, top-level files last."""
    gfile = _gfile()
    storage.require_filesystem(path)
    path = path.rstrip("/")
    if gfile.exists(path):
        gfile.rmtree(path)
    files = []
    for root, dirs, names in os.walk(local):
        relative = os.path.relpath(root, local).replace(os.sep, "/")
        for name in dirs:  # empty ones too (a SavedModel's assets/)
            gfile.makedirs(f"{path}/{name}" if relative == "." else f"{path}/{relative}/{name}")
        files += [name if relative == "." else f"{relative}/{name}" for name in names]
    for name in sorted(files, key=lambda n: (-n.count("/"), n)):  # deepest first
        gfile.copy(os.path.join(local, name), f"{path}/{name}", overwrite=True)


def upload_new_files(local, path, last=()):
    """Copies the files of the local tree `local` into the remote directory
    `path`; returns how many were copied.

    Each object is written once, complete (one copy). Objects already there
    with the same size are skipped, so an interrupted upload resumes; files
    named in `last` (at any depth, e.g. the converter's manifest.json, which
    says the set is complete) go after all others. Temporaries are not sent.
    """
    gfile = _gfile()
    storage.require_filesystem(path)
    path = path.rstrip("/")
    files = []
    for root, _, names in os.walk(local):
        relative = os.path.relpath(root, local).replace(os.sep, "/")
        files += [name if relative == "." else f"{relative}/{name}" for name in names
                  if not is_temporary(name)]
    copied = 0
    for name in sorted(files, key=lambda n: (n.rsplit("/", 1)[-1] in last, n)):
        source, target = os.path.join(local, name), f"{path}/{name}"
        if gfile.exists(target) and gfile.stat(target).length == os.path.getsize(source):
            continue
        gfile.makedirs(target.rsplit("/", 1)[0])
        gfile.copy(source, target, overwrite=True)
        copied += 1
    return copied


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary sibling directory that replaces `path` on success.

    On an error the temporary directory is removed and `path` is untouched.
    The swap is two renames (POSIX cannot replace a non-empty directory in
    one): `path` is moved aside under a second temporary name, then the new
    directory takes its place. In between `path` is briefly missing, never
    half-written; a crash right there leaves the old version under a
    temporary name, which `remove_temporaries` deletes. On object storage the
    temporary is local and then uploaded, not atomically (module docstring).
    """
    path = os.fspath(path)
    if storage.is_remote(path):
        with _local_staging(path) as tmp:
            yield tmp
            _upload_tree(tmp, path)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        old = None
        if os.path.exists(path):
            old = temporary_path(path)
            os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            if old:  # put the old version back
                os.rename(old, path)
            raise
        if old:
            shutil.rmtree(old)
    except OSError as e:
        failed = _write_failed(path, e)
        if failed:
            raise failed from None
        raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def remove_temporaries(directory, outputs=None):
    """Removes the leftover temporaries (files and staging directories) in
    `directory`: those of the base names `outputs`, or every one if None.

    Every writing binary calls it for the outputs it is about to write, before
    it writes them (a run killed earlier left their temporaries); with None,
    who owns the whole directory (the training chief holding the run's lock,
    a converter in its output directory). Only names of this module's scheme
    are touched, never a user's file, and never the temporary of a writer
    that is provably at work (`_writer_is_alive`). A directory on object
    storage has none (its temporaries are staged locally). Returns the sorted
    paths removed, and logs them.
    """
    if storage.is_remote(directory) or not os.path.isdir(directory):
        return []
    removed, kept = [], []
    for name in sorted(os.listdir(directory)):
        parsed = _parse(name)
        if parsed and (outputs is None or parsed[0] in outputs):
            (kept if _writer_is_alive(*parsed[1:]) else removed).append(
                os.path.join(directory, name))
    for path in removed:
        try:
            _remove(path)
        except FileNotFoundError:  # another rerun removed it first
            pass
    if removed:
        _LOG.info("removed %d temporary file(s) of killed writers: %s", len(removed),
                  ", ".join(removed))
    if kept:
        _LOG.info("kept %d temporary file(s) of writers at work: %s", len(kept), ", ".join(kept))
    return removed
