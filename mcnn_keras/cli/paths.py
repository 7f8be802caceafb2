"""Paths given on the command line, resolved as the user meant them.

Under `bazel run` the working directory is the runfiles tree; the user's own
directory is in BUILD_WORKING_DIRECTORY, so relative paths resolve there.

Usage:

    output_dir = resolve_user_path(FLAGS.output_dir)
"""

import os


def resolve_user_path(path):
    """Joins a relative `path` with the user's directory under `bazel run`."""
    base = os.environ.get("BUILD_WORKING_DIRECTORY")
    if path and base and not os.path.isabs(path) and "://" not in path:
        return os.path.join(base, path)
    return path
