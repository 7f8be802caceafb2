"""Shared pytest fixtures for the mcnn-keras tests.

Works the same under `bazel test` (files come from the runfiles tree, scratch
space from $TEST_TMPDIR) and under plain `pytest` from the repo root:

    def test_reads_samples(testdata_dir, scratch_dir):
        records = convert(testdata_dir / "images", scratch_dir / "out")
"""

import os
import pathlib

import pytest

# Before TensorFlow is imported by any test module: keep its C++ logging quiet
# and make sure Keras 3 uses TensorFlow even if the user's keras.json differs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# tests/ sits directly under the repo root, both in the source tree and in
# Bazel's runfiles tree (do not resolve symlinks: runfiles are symlinks).
_REPO_ROOT = pathlib.Path(os.path.abspath(__file__)).parent.parent


def under_bazel():
    """True when running inside `bazel test`."""
    return "TEST_SRCDIR" in os.environ


@pytest.fixture(scope="session")
def repo_root():
    """The repository root (the runfiles workspace directory under Bazel)."""
    return _REPO_ROOT


@pytest.fixture(scope="session")
def testdata_dir(repo_root):
    """The bundled sample data, `testdata/` at the repository root."""
    return repo_root / "testdata"


@pytest.fixture
def scratch_dir(tmp_path):
    """A fresh empty directory for one test.

    pytest's tmp_path; under Bazel it lies inside $TEST_TMPDIR (the runner
    passes --basetemp), so Bazel cleans it up and parallel tests never share.
    """
    return tmp_path
