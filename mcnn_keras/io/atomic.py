"""Atomic file and directory writes: readers see the old or the new, never half.

Every writer of the project goes through here, so there is one temporary-name
scheme, `.<basename>.tmp-<32 hex digits><extension of basename>` next to the
target (same file system, so the final rename is atomic; hidden, so globs such
as `train-*.tfrecord` do not see it; the extension kept, so np.savez does not
append ".npz", matplotlib infers the format and tifffile is happy), and one
cleanup, `remove_temporaries`.

Usage:

    write_json_atomic("run/flags.json", flags)
    with atomic_file("out/illumination.npz") as tmp:   # any writer, any format
        np.savez(tmp, **maps)                          # then it replaces the target
    with atomic_directory("run/export") as tmp:        # build the new dir in tmp
        model.export(tmp)                              # then it replaces run/export
    remove_temporaries("out")   # after a crash: leftovers of the scheme above

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
import json
import os
import re
import shutil
import tempfile
import uuid

from mcnn_keras.io import storage

_TAG = re.compile(r"\.tmp-[0-9a-f]{32}")


def temporary_path(path):
    """A fresh temporary name for `path`, in the same directory."""
    directory, name = os.path.split(os.fspath(path))
    return os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}{os.path.splitext(name)[1]}")


def is_temporary(name):
    """True if the base name `name` was made by `temporary_path` (ours, not a user's)."""
    if not name.startswith("."):
        return False
    # Try every tag position: the target's own name may contain ".tmp-<hex>".
    return any(m.start() > 1 and name[m.end():] == os.path.splitext(name[1:m.start()])[1]
               for m in _TAG.finditer(name))


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
    except BaseException:
        _remove(tmp)
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
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def remove_temporaries(directory):
    """Removes the leftover temporaries (files and directories) in `directory`.

    Only names of this module's scheme are touched, never a user's file. Call
    it when no writer is at work in `directory` (it would pull the temporary
    from under the writer). Returns the sorted paths removed.
    """
    removed = sorted(os.path.join(directory, name) for name in os.listdir(directory)
                     if is_temporary(name))
    for path in removed:
        _remove(path)
    return removed
