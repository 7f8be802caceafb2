"""Where this source tree is, for the processes it starts and its bundled data.

Usage:

    env = dict(os.environ, PYTHONPATH=python_path())   # a child imports this tree
    os.path.join(DEMO_DATA, "train-*.tfrecord")        # the bundled demo shards
"""

import os

# mcnn_keras/core/repo.py -> the directory holding mcnn_keras/.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The bundled demo set: `mcnn-train` with no flags trains on it.
DEMO_DATA = os.path.join(REPO_ROOT, "testdata", "synthetic")


def python_path(environ=None):
    """PYTHONPATH for a child process: this tree first, then the caller's own."""
    environ = os.environ if environ is None else environ
    return os.pathsep.join([REPO_ROOT] + [p for p in environ.get("PYTHONPATH", "").split(
        os.pathsep) if p])
