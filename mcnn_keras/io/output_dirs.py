"""Output paths a binary can write, checked before any work.

Every binary that writes into a directory it is given (`--output_dir`,
`--model_dir`, `--staging_dir`, `--sweep_output_dir`) makes it here first, and
every binary that writes a file it is given (`--plot`, `--output_csv`) checks
it here first, so a path that is a file (a directory), cannot be created or is
read-only is one line naming the flag instead of a traceback at the first
write, after the work.

Usage:

    make_output_dir("out/eval", "output_dir")      # ValueError naming --output_dir
    check_output_file("out/scaling.png", "plot")   # ValueError naming --plot
"""

import os

from mcnn_keras.io import atomic
from mcnn_keras.io import storage


def _directory_problem(path):
    """Why files cannot be written in directory `path` (created if missing), or None.

    Writing is tried with a temporary file, since os.access says yes to root
    everywhere (a read-only file system included).
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        return "exists and is not a directory"
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        return f"cannot create it ({e.strerror})"
    probe = atomic.temporary_path(os.path.join(path, "write-test"))
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.remove(probe)
    except OSError as e:
        return f"cannot write there ({e.strerror})"
    return None


def make_output_dir(path, flag):
    """Creates directory `path` (given as `--flag`) if missing; returns it.

    One line naming the flag instead of a traceback when `path` is a file,
    cannot be created, or cannot be written (a read-only file system).
    Remote paths are left to their file system.
    """
    if storage.is_remote(path):
        return path
    problem = _directory_problem(path)
    if problem:
        raise ValueError(f"--{flag}={path}: {problem}")
    return path


def check_output_file(path, flag):
    """Checks that file `path` (given as `--flag`) can be written; returns it.

    One line naming the flag when `path` is a directory, or its directory
    is a file, cannot be created or cannot be written (the directory is
    created if missing; the file itself is left as it is: an existing one is
    replaced by the work, atomically). Remote paths are left to their file
    system.
    """
    if storage.is_remote(path):
        return path
    if os.path.isdir(path):
        raise ValueError(f"--{flag}={path}: is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    problem = _directory_problem(directory)
    if problem:
        raise ValueError(f"--{flag}={path}: directory {directory}: {problem}")
    return path
