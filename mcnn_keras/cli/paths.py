"""Paths given on the command line, resolved the way the user meant them.

Under `bazel run` a binary runs inside the runfiles tree, not where the user
typed the command; Bazel exports that directory as BUILD_WORKING_DIRECTORY.

Usage:

    output_dir = resolve_user_path(FLAGS.output_dir)
"""

import os


def resolve_user_path(path):
    """Returns `path` joined to $BUILD_WORKING_DIRECTORY if relative and set."""
    base = os.environ.get("BUILD_WORKING_DIRECTORY")
    if path and base and not os.path.isabs(path) and "://" not in path:  # s3://, gs://
        return os.path.join(base, path)
    return path
