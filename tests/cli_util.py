"""Running the binaries in tests: a real process each, and what their failures must look like.

Usage:

    result = run_binary("mcnn_keras.cli.evaluate", f"--model_dir={run}")
    assert_one_line_error(run_train(f"--model_dir={run}", "--batch_size=0"),
                          "--batch_size=0")
    before = tree_digest(run)   # ... later: assert tree_digest(run) == before
"""

import hashlib
import subprocess
import sys


def run_binary(module, *flags, timeout=300, **kwargs):
    """Runs `python -m module flags...`; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", module, *flags], capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def train_command(*flags):
    """The mcnn-train command line (quiet: one line per epoch, no TensorBoard)."""
    return [sys.executable, "-m", "mcnn_keras.cli.train", "--verbose=2",
            "--tensorboard=false", *flags]


def run_train(*flags, timeout=300):
    return subprocess.run(train_command(*flags), capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result, *fragments):
    """Exit 1, the last stderr line `error: ...` holding every fragment, no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in last, last


def tree_digest(directory):
    """{relative path: sha256} of every file under `directory`."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def defined_flags(module):
    """({flag: default} of every flag the project's modules define once binary
    `module` is imported, whether TensorFlow got imported), in a fresh process
    (several binaries define flags of the same name)."""
    import json  # pylint: disable=import-outside-toplevel
    code = ("import importlib, json, sys; from absl import flags; "
            f"importlib.import_module({module!r}); "
            "print(json.dumps([{f.name: f.default for m, fs in "
            "flags.FLAGS.flags_by_module_dict().items() if m.startswith('mcnn_keras') "
            "for f in fs}, 'tensorflow' in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    return tuple(json.loads(result.stdout))
