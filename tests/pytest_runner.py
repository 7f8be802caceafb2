"""Runs one pytest file as a Bazel py_test and exits with pytest's status.

Bazel runs a py_test's main file as a plain script, so a pytest-style test
file on its own would "pass" without running a single test. Every py_test
made by tests/defs.bzl runs this file instead, with the test file as argument:

    python3 tests/pytest_runner.py tests/test_model.py [extra pytest args]

Under `bazel test` the JUnit XML goes to $XML_OUTPUT_FILE (Bazel shows it in
bazel-testlogs/), pytest's temporary files under $TEST_TMPDIR, and
`--test_filter=EXPR` becomes `pytest -k EXPR`.
"""

import os
import sys

import pytest

# pytest's "no tests were collected": a file whose tests all vanished (bad
# filter, broken parametrisation) must not count as a pass.
_NO_TESTS_COLLECTED = 5


def pytest_args(argv, environ):
    """Builds pytest's argument list from our argv and Bazel's environment."""
    if not argv:
        raise SystemExit("usage: pytest_runner.py TEST_FILE [PYTEST_ARGS...]")
    args = list(argv) + ["-p", "no:cacheprovider", "-rfEs"]
    if "XML_OUTPUT_FILE" in environ:
        args += ["--junitxml", environ["XML_OUTPUT_FILE"]]
    if "TEST_TMPDIR" in environ:
        # One private directory per test target: parallel tests never share
        # pytest's default /tmp/pytest-of-<user>.
        args += ["--basetemp", os.path.join(environ["TEST_TMPDIR"], "pytest")]
    if environ.get("TESTBRIDGE_TEST_ONLY"):
        args += ["-k", environ["TESTBRIDGE_TEST_ONLY"]]
    return args


def main():
    code = int(pytest.main(pytest_args(sys.argv[1:], os.environ)))
    if code == _NO_TESTS_COLLECTED:
        print(f"pytest_runner: no tests collected from {sys.argv[1]}",
              file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
