"""Atomic file and directory writes: readers see the old or the new, never half.

Usage:

    write_text_atomic("run/flags.json", json.dumps(flags))
    with atomic_directory("run/export") as tmp:   # build the new dir in tmp
        model.export(tmp)                         # then it replaces run/export
"""

import contextlib
import json
import os
import shutil
import uuid


def write_text_atomic(path, text):
    """Writes `text` to `path` via a temporary file in the same directory."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(path, value):
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary sibling directory that replaces `path` on success.

    On an error the temporary directory is removed and `path` is untouched.
    The swap is two renames; between them `path` is briefly missing, never
    half-written.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        yield tmp
        old = None
        if os.path.exists(path):
            old = os.path.join(parent, f".{os.path.basename(path)}.old-{uuid.uuid4().hex}")
            os.rename(path, old)
        os.rename(tmp, path)
        if old:
            shutil.rmtree(old)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
