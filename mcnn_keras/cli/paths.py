"""Paths given on the command line, resolved the way the user meant them.

Under `bazel run` a binary runs inside the runfiles tree, not where the user
typed the command; Bazel exports that directory as BUILD_WORKING_DIRECTORY.

Usage:

    output_dir = resolve_user_path(FLAGS.output_dir)
"""

import os

from mcnn_keras.io import storage


def resolve_user_path(path):
    """Returns `path` joined to $BUILD_WORKING_DIRECTORY if relative and set."""
    base = os.environ.get("BUILD_WORKING_DIRECTORY")
    if path and base and not os.path.isabs(path) and not storage.is_remote(path):
        return os.path.join(base, path)
    return path
