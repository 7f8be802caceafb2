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

A path with a scheme (`gs://...`) is renamed with tf.io.gfile; TensorFlow is
imported only then, so this module stays importable without it.
"""

import contextlib
import json
import os
import re
import shutil
import uuid

_TAG = re.compile(r"\.tmp-[0-9a-f]{32}")


def _is_remote(path):
    return "://" in str(path)


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
    if _is_remote(path):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_file(path):
    """Yields a temporary path to write; on success it replaces `path`.

    The writer must have closed the file when the block ends. The temporary is
    fsynced before the rename (else a crash could leave `path` renamed but
    empty). On any exception, KeyboardInterrupt included, the temporary is
    removed and `path` is untouched.
    """
    path = os.fspath(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        if _is_remote(path):
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            tf.io.gfile.rename(tmp, path, overwrite=True)
        else:
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
    """Writes `text` to the local file `path` atomically."""
    with atomic_file(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_json_atomic(path, value):
    """Writes `value` as indented, key-sorted JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary sibling directory that replaces `path` on success.

    On an error the temporary directory is removed and `path` is untouched.
    The swap is two renames (POSIX cannot replace a non-empty directory in
    one): `path` is moved aside under a second temporary name, then the new
    directory takes its place. In between `path` is briefly missing, never
    half-written; a crash right there leaves the old version under a
    temporary name, which `remove_temporaries` deletes.
    """
    path = os.fspath(path)
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
