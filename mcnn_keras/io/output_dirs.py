"""Output directories a binary can write, checked before any work.

Every binary that writes into a directory it is given (`--output_dir`,
`--model_dir`, `--staging_dir`) makes it here first, so a path that is a file,
cannot be created or is read-only is one line naming the flag instead of a
traceback at the first write, after the work.

Usage:

    make_output_dir("out/eval", "output_dir")   # ValueError naming --output_dir
"""

import os

from mcnn_keras.io import atomic
from mcnn_keras.io import storage


def make_output_dir(path, flag):
    """Creates directory `path` (given as `--flag`) if missing; returns it.

    One line naming the flag instead of a traceback when `path` is a file,
    cannot be created, or cannot be written (a read-only file system: tried
    with a temporary file, since os.access says yes to root everywhere).
    Remote paths are left to their file system.
    """
    if storage.is_remote(path):
        return path
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"--{flag}={path}: exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--{flag}={path}: cannot create it ({e.strerror})") from None
    probe = atomic.temporary_path(os.path.join(path, "write-test"))
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--{flag}={path}: cannot write there ({e.strerror})") from None
    return path
