"""What every binary shares: clean one-line errors, threads, bundled data.

Usage (in a binary):

    def main(argv):
        common.configure_threads(FLAGS.intra_op_threads, FLAGS.inter_op_threads)
        ...

    def run():
        common.run_main(main)
"""

import os
import re
import sys

from absl import app, flags, logging

# The repository root: testdata/ lives there (also in Bazel runfiles).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_DATA = os.path.join(REPO_ROOT, "testdata", "synthetic")


def error_line(exc):
    """A one-line description of an error, without TensorFlow's graph noise."""
    message = getattr(exc, "message", None) or str(exc)
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    # tf.debugging.Assert says "assertion failed: [source] [message]", possibly
    # deep inside a "Graph execution error" report.
    assertion = re.search(r"assertion failed: \[(.*?)\] \[(.*?)\]", message)
    if assertion:
        return f"{assertion.group(1)}: {assertion.group(2)}"
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    return first or type(exc).__name__


def run_main(main):
    """`app.run(main)`, turning expected errors into `error: ...` and exit 1.

    Logging defaults to warnings and up (TensorFlow's INFO lines drown the
    progress bar); `--verbosity=0` brings them back.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    # Under `bazel run` a relative --flagfile means the user's directory (or,
    # failing that, the repository: configs/ ships in the runfiles).
    from mcnn_keras.cli.paths import resolve_user_path  # pylint: disable=import-outside-toplevel
    for i, arg in enumerate(sys.argv):
        if arg.startswith("--flagfile="):
            path = resolve_user_path(arg.split("=", 1)[1])
            if os.path.exists(path):
                sys.argv[i] = f"--flagfile={path}"

    def guarded(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except (ValueError, FileNotFoundError, tf.errors.OpError) as e:
            print(f"error: {error_line(e)}", file=sys.stderr, flush=True)
            sys.exit(1)
    app.run(guarded)


def configure_threads(intra_op, inter_op):
    """Sets TensorFlow's thread pools; must run before the first TF op.

    0 keeps what the environment says (TF_NUM_INTRAOP_THREADS /
    TF_NUM_INTEROP_THREADS, which `mcnn-launch` sets per pinned worker).
    """
    from mcnn_keras import launcher  # pylint: disable=import-outside-toplevel
    environ = dict(os.environ)
    if intra_op:
        environ["TF_NUM_INTRAOP_THREADS"] = str(intra_op)
    if inter_op:
        environ["TF_NUM_INTEROP_THREADS"] = str(inter_op)
    return launcher.configure_threads_from_env(environ)
