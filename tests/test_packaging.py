"""Packaging and build checks: the model builds, console scripts resolve.

    bazel test //tests:test_packaging     # or: pytest tests/test_packaging.py
"""

import configparser
import os
import subprocess
import sys

import pytest

# Console scripts the README and tools/demo.sh rely on: name -> "module:func".
EXPECTED_SCRIPTS = {
    "mcnn-train": "mcnn_keras.cli.train:run",
    "mcnn-evaluate": "mcnn_keras.cli.evaluate:run",
    "mcnn-export": "mcnn_keras.cli.export:run",
    "mcnn-synthetic": "mcnn_keras.cli.synthetic:run",
    "mcnn-convert-bbbc021": "mcnn_keras.cli.convert_bbbc021:run",
    "mcnn-bbbc021-fixture": "mcnn_keras.cli.bbbc021_fixture:run",
    "mcnn-launch": "mcnn_keras.cli.launch:run",
    "mcnn-scaling-model": "mcnn_keras.cli.scaling_model:run",
    "mcnn-ttt": "mcnn_keras.cli.ttt:run",
    "mcnn-bench": "mcnn_keras.cli.bench:run",
    "mcnn-profile": "mcnn_keras.cli.profile:run",
    "mcnn-predict": "mcnn_keras.cli.predict:run",
    "mcnn-convert-images": "mcnn_keras.cli.convert_images:run",
}


def _setup_cfg(repo_root):
    config = configparser.ConfigParser()
    assert config.read(repo_root / "setup.cfg"), "setup.cfg not found"
    return config


def _declared_scripts(config):
    lines = config["options.entry_points"]["console_scripts"].splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip())
    return {name.strip(): target.strip() for name, target in pairs}


def test_package_imports_from_source_tree(repo_root):
    import mcnn_keras

    # Under Bazel the package must come from the runfiles tree (the sources
    # being tested), not from whatever `pip install` put in the virtualenv.
    package_dir = os.path.dirname(os.path.abspath(mcnn_keras.__file__))
    assert package_dir == str(repo_root / "mcnn_keras")


def test_version_matches_setup_cfg(repo_root):
    import mcnn_keras

    version = _setup_cfg(repo_root)["metadata"]["version"]
    assert version == "attr: mcnn_keras.__version__"
    assert mcnn_keras.__version__.count(".") == 2


def test_build_model_parameter_count():
    import mcnn_keras

    model = mcnn_keras.build_model(128, 128)
    assert model.count_params() == 1158509


def test_console_scripts_declared(repo_root):
    assert _declared_scripts(_setup_cfg(repo_root)) == EXPECTED_SCRIPTS


@pytest.mark.parametrize("script", sorted(EXPECTED_SCRIPTS))
def test_console_script_resolves(script, repo_root):
    # A fresh interpreter per script, as a console script really runs: the cli
    # modules define absl flags at import time, and two of them in one process
    # may legitimately define the same flag (e.g. --model_dir).
    module_name, function_name = EXPECTED_SCRIPTS[script].split(":")
    check = (
        "import importlib, sys\n"
        f"module = importlib.import_module({module_name!r})\n"
        f"sys.exit(0 if callable(getattr(module, {function_name!r}, None)) else 3)\n"
    )
    result = subprocess.run([sys.executable, "-c", check], cwd=repo_root,
                            capture_output=True, text=True, timeout=300)
    if result.returncode == 3:
        pytest.fail(f"{script}: {module_name} has no function {function_name}()")
    if result.returncode != 0:
        pytest.fail(f"{script}: importing {module_name} failed:\n"
                    f"{result.stderr[-2000:]}")
