"""storage: which paths need tensorflow-io, the one-line error where it cannot
load, remote atomic writes (through TensorFlow's built-in ram://), and the
clean exit of a process that loaded tensorflow-io. The S3 server side is
tests/test_s3.py."""

import importlib.util
import os
import subprocess
import sys
import textwrap
import time

import pytest

from mcnn_keras.core.repo import REPO_ROOT
from mcnn_keras.io import atomic
from mcnn_keras.io import storage



def _plugin_can_load():
    """True where tensorflow-io's plugin loads (the TensorFlow 2.16 leg)."""
    if importlib.util.find_spec("tensorflow_io") is None:
        return False
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.__version__.startswith("2.16.")


def test_schemes_of_paths_globs_and_lists():
    assert storage.scheme("s3://b/k") == "s3" and storage.scheme("/data/x") == ""
    assert storage.scheme("GS://b/k") == "gs" and storage.scheme("C:/x") == ""
    assert storage.plugin_schemes("/a/train-*.tfrecord,s3://b/t-*.tfrecord") == ["s3"]
    assert storage.plugin_schemes(["gs://b/x", None, "", "hdfs://nn/x", ["s3://b/y"]]) == [
        "hdfs", "s3"]
    assert storage.plugin_schemes(["runs/x", "gs://b/x", "ram://x"]) == []


def test_local_and_builtin_schemes_load_nothing():
    code = textwrap.dedent("""
        import sys
        from mcnn_keras.io import storage
        assert storage.require_filesystem(["/tmp/x", "gs://b/x", "ram://y", None]) == []
        assert "tensorflow_io" not in sys.modules and "tensorflow" not in sys.modules
        assert not storage.plugin_loaded()
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(_plugin_can_load(), reason="tensorflow-io's plugin loads here "
                    "(TensorFlow 2.16): the working path is tests/test_s3.py")
@pytest.mark.parametrize("binary, flags", [
    ("train", ["--train_files=s3://bucket/x-*.tfrecord"]),
    ("train", ["--model_dir=s3://bucket/runs/x"]),
    ("evaluate", ["--model_dir=s3://bucket/runs/x"]),
    ("synthetic", ["--output_dir=s3://bucket/data"]),
])
def test_s3_without_a_loadable_plugin_is_one_line_before_any_work(binary, flags, tmp_path):
    start = time.monotonic()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    model_dir = [f"--model_dir={cwd / 'run'}"] if binary == "train" and not any(
        f.startswith("--model_dir") for f in flags) else []
    # A writable matplotlib cache: under Bazel's sandbox $HOME is not, and
    # matplotlib would warn about it on stderr.
    env = dict(os.environ, MPLCONFIGDIR=str(tmp_path / "mpl"))
    result = subprocess.run([sys.executable, "-m", f"mcnn_keras.cli.{binary}"] + flags
                            + model_dir, capture_output=True, text=True, timeout=120,
                            cwd=cwd, env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: s3:// paths need tensorflow-io's file-system plugin, "
                           "which cannot load here (TensorFlow "), line
    for words in ("TensorFlow 2.16 + tensorflow-io 0.37.1", "pip install 'mcnn-keras[s3]'",
                  "stage the files to local disk", "gs://, which TensorFlow has built in"):
        assert words in line
    assert result.stdout == ""
    assert os.listdir(cwd) == []  # no run directory, no local "s3:" directory
    assert time.monotonic() - start < 60


def test_remote_atomic_file_uploads_once_at_the_end_and_leaves_no_temporary():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    target = "ram://atomic-test/run/flags.json"
    with atomic.atomic_file(target) as tmp:
        assert "://" not in tmp and atomic.is_temporary(os.path.basename(tmp))
        with open(tmp, "w") as f:
            f.write("{}")
        assert not tf.io.gfile.exists(target)  # nothing visible until the block ends
    assert tf.io.gfile.GFile(target).read() == "{}" and not os.path.exists(tmp)
    # (Replacing an object: tests/test_s3.py; TensorFlow's ram:// appends instead.)
    atomic.write_json_atomic("ram://atomic-test/run/summary.json", {"a": 1})
    assert tf.io.gfile.GFile("ram://atomic-test/run/summary.json").read() == (
        '{\n  "a": 1\n}\n')
    with pytest.raises(RuntimeError):
        with atomic.atomic_file("ram://atomic-test/run/never.json") as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("writer failed")
    assert not tf.io.gfile.exists("ram://atomic-test/run/never.json")
    assert not os.path.exists(tmp)
    assert sorted(tf.io.gfile.listdir("ram://atomic-test/run")) == ["flags.json",
                                                                    "summary.json"]


def test_remote_atomic_directory_replaces_the_tree_top_level_files_last(monkeypatch):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    target = "ram://atomic-test/run/export"
    with atomic.atomic_directory(target) as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
        os.makedirs(os.path.join(tmp, "assets"))
        for name in ("saved_model.pb", "old_only.txt", "variables/variables.index"):
            with open(os.path.join(tmp, name), "w") as f:
                f.write("old " + name)
    copies = []
    original = tf.io.gfile.copy
    monkeypatch.setattr(tf.io.gfile, "copy", lambda src, dst, overwrite=False: (
        copies.append(dst[len(target) + 1:]), original(src, dst, overwrite))[1])
    with atomic.atomic_directory(target) as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
        for name in ("saved_model.pb", "fingerprint.pb", "variables/variables.index",
                     "variables/variables.data-00000-of-00001"):
            with open(os.path.join(tmp, name), "w") as f:
                f.write("new " + name)
    assert copies == ["variables/variables.data-00000-of-00001", "variables/variables.index",
                      "fingerprint.pb", "saved_model.pb"]
    assert sorted(tf.io.gfile.listdir(target)) == ["fingerprint.pb", "saved_model.pb",
                                                   "variables"]  # old_only.txt is gone
    assert tf.io.gfile.GFile(f"{target}/saved_model.pb").read() == "new saved_model.pb"
    assert not os.path.exists(tmp)


_EXIT_SCRIPT = """
import atexit, sys
from mcnn_keras.io import storage
from mcnn_keras.cli import common
storage._loaded = {loaded}
atexit.register(lambda: print("teardown ran", file=sys.stderr, flush=True))
def main(argv):
    print("main ran", flush=True)
    {body}
common.run_main(main, import_tensorflow=False)
"""


@pytest.mark.parametrize("body, code, stderr_has", [
    ("return None", 0, ""),
    ("sys.exit(143)", 143, ""),
    ("raise ValueError('bad input')", 1, "error: bad input"),
    ("raise RuntimeError('a bug')", 1, "RuntimeError: a bug"),
])
@pytest.mark.parametrize("loaded", [False, True], ids=["plain", "tensorflow_io_loaded"])
def test_run_main_keeps_each_exit_status_and_skips_teardown_once_tensorflow_io_loaded(
        body, code, stderr_has, loaded):
    script = _EXIT_SCRIPT.format(loaded=loaded, body=body)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=REPO_ROOT)
    assert result.returncode == code, result.stderr
    assert result.stdout == "main ran\n"
    assert stderr_has in result.stderr
    # os._exit skips the teardown where tensorflow-io 0.37.1 aborts (exit 134).
    assert ("teardown ran" in result.stderr) == (not loaded), result.stderr
