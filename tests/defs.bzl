"""pytest_suite: one py_test per tests/test_*.py, all run through pytest.

A py_test runs its main file as a script, so a pytest-style file alone would
pass without running anything. Every test here instead runs the shared
`pytest_runner.py`, which calls pytest on the one test file and writes JUnit
XML to $XML_OUTPUT_FILE.

    load("//tests:defs.bzl", "pytest_suite")

    pytest_suite(
        name = "all",
        overrides = {
            "test_*multiworker*": {"tags": ["exclusive"]},
            "test_training": {"timeout": "eternal"},
        },
    )
"""

_RUNNER = "pytest_runner.py"

def _matches(pattern, name):
    """Shell-style match where only "*" is special: "test_*multiworker*"."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == name
    head, tail = parts[0], parts[-1]
    if len(name) < len(head) + len(tail):
        return False
    if not name.startswith(head) or not name.endswith(tail):
        return False
    position, end = len(head), len(name) - len(tail)
    for part in parts[1:-1]:
        found = name.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True

def pytest_suite(
        name,
        overrides = {},
        deps = [],
        data = [],
        size = "large",
        tags = []):
    """Declares a py_test per test_*.py in this package, plus a test_suite.

    Args:
      name: name of the test_suite holding every generated test.
      overrides: test name (without .py), or a pattern with "*" wildcards,
        -> dict of py_test attributes (size, timeout, tags, flaky, ...).
        Every matching entry applies, in dictionary order; "tags" add up.
      deps: deps of every test (besides the runner).
      data: data of every test.
      size: default size; "large" means a 900 s timeout.
      tags: tags of every test.
    """
    tests = []
    for src in native.glob(["test_*.py"]):
        test_name = src[:-len(".py")]
        attrs = {"size": size}
        test_tags = list(tags)
        for key, extra in overrides.items():
            if _matches(key, test_name):
                for attr, value in extra.items():
                    if attr == "tags":
                        test_tags += [t for t in value if t not in test_tags]
                    else:
                        attrs[attr] = value
        native.py_test(
            name = test_name,
            srcs = [_RUNNER, src],
            main = _RUNNER,
            args = ["$(rootpath %s)" % src],
            data = data,
            deps = deps,
            legacy_create_init = False,
            python_version = "PY3",
            srcs_version = "PY3",
            tags = test_tags,
            **attrs
        )
        tests.append(test_name)

    native.test_suite(
        name = name,
        tests = tests,
    )
