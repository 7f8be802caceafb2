"""Every binary's --help lists its own flags, fast; start-up on CPU is quiet.

`--help` (and -h, -?, --helpshort) prints the binary's docstring and its own
flags, exits 0 and imports no TensorFlow. A run on a CPU machine shows none
of the CUDA-build / oneDNN start-up notices, while real errors still show.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

# Console script, module, a few of its own flags.
BINARIES = [
    ("mcnn-train", "train", ["train_files", "batch_size", "base_lr", "model_dir", "strategy"]),
    ("mcnn-evaluate", "evaluate", ["model_dir", "saved_model", "files"]),
    ("mcnn-export", "export", ["model_dir", "export_dir"]),
    ("mcnn-synthetic", "synthetic", ["output_dir", "num_train"]),
    ("mcnn-convert-bbbc021", "convert_bbbc021", ["bbbc021_dir", "split", "drop_dmso"]),
    ("mcnn-bbbc021-fixture", "bbbc021_fixture", ["output_dir", "plates", "compress"]),
    ("mcnn-launch", "launch", ["num_workers", "pin_cores", "print_slurm_tf_config", "numa"]),
    ("mcnn-bench", "bench", ["height", "batch_size", "dtype", "remat", "mode", "train_files",
                             "sweep_output_dir"]),
    ("mcnn-ttt", "ttt", ["output_dir", "configs", "target_accuracy"]),
    ("mcnn-scaling-model", "scaling_model", ["nodes", "bandwidth_gbps", "dataset"]),
    ("mcnn-convert-images", "convert_images", ["index_csv", "channel_columns", "channel_order",
                                               "resize", "split"]),
    ("mcnn-predict", "predict", ["saved_model", "inputs", "output_csv", "features_out",
                                 "skip_bad", "normalization", "channel_columns"]),
    ("mcnn-profile", "profile", ["features", "output_dir", "aggregate", "normalize", "batch"]),
]
NOISE = ("cuda", "cuInit", "oneDNN custom operations", "absl::InitializeLog",
         "cpu_feature_guard")


def console_script(name):
    """The installed console script next to this interpreter (or on PATH)."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which(name, path=path)


def user_env(**overrides):
    """The environment of a user who has not tuned TensorFlow's logging."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    env.update(COLUMNS="100", **overrides)
    return env


def run(command, timeout=60, **env):
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=user_env(**env))


def assert_lists_flags(result, binary, names):
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"{binary}: "), result.stdout[:300]
    for name in names:
        assert f"--{name}: " in result.stdout or f"--[no]{name}: " in result.stdout, \
            (name, result.stdout)
    assert "(default: " in result.stdout
    assert "--helpfull" in result.stdout
    assert result.stderr == ""  # no TensorFlow import, no noise


@pytest.mark.parametrize("binary,module,names", BINARIES, ids=[b[1] for b in BINARIES])
def test_help_lists_own_flags(binary, module, names):
    result = run([sys.executable, "-m", f"mcnn_keras.cli.{module}", "--help"])
    assert_lists_flags(result, binary, names)


@pytest.mark.parametrize("binary,module,names", BINARIES, ids=[b[1] for b in BINARIES])
def test_console_script_help_lists_own_flags(binary, module, names):
    del module
    script = console_script(binary)
    if not script:
        pytest.skip(f"{binary} is not installed")
    assert_lists_flags(run([script, "--help"]), binary, names)


@pytest.mark.parametrize("arg", ["-h", "-?", "--helpshort"])
def test_short_help_spellings(arg):
    result = run([sys.executable, "-m", "mcnn_keras.cli.evaluate", arg])
    assert_lists_flags(result, "mcnn-evaluate", ["model_dir", "saved_model", "files"])


def test_helpfull_stays_absls():
    result = run([sys.executable, "-m", "mcnn_keras.cli.evaluate", "--helpfull"], timeout=120)
    assert result.returncode in (0, 1), result.stderr[-3000:]  # absl's help exits 1
    assert "absl.flags:" in result.stdout and "--flagfile" in result.stdout
    assert "--saved_model" in result.stdout


def test_help_sections_keep_their_order_and_list_the_rest():
    script = textwrap.dedent("""
        import sys
        sys.argv = ["prog", "-h"]  # absl files __main__'s flags under sys.argv[0]
        from absl import flags
        from mcnn_keras.cli import common
        flags.DEFINE_integer("zeta", 3, "Last letter, first section.")
        flags.DEFINE_boolean("alpha", True, "First letter.")
        flags.DEFINE_string("stray", None, "In no section.")
        flags.mark_flag_as_required("stray")
        def main(argv):
            raise AssertionError("main must not run for --help")
        common.run_main(main, help_sections=[("first", ["zeta"]), ("second", ["--alpha"])])
        """)
    result = run([sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.index("first:\n  --zeta: Last letter") < text.index("second:\n  --[no]alpha:")
    assert "(default: '3')\n    (an integer)" in text
    assert "other flags:\n  --stray: In no section.\n    (required)" in text


@pytest.mark.parametrize("module", [b[1] for b in BINARIES])
def test_help_imports_no_tensorflow(module):
    script = textwrap.dedent(f"""
        import sys
        sys.argv = ["prog", "--help"]
        from mcnn_keras.cli import {module} as binary
        try:
            binary.run()
        except SystemExit as e:
            assert e.code in (0, None), e.code
        heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
        print("imported:", heavy, file=sys.stderr)
        """)
    result = run([sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "imported: []", result.stderr[-3000:]


def synthetic_command(script, tmp_path, *flags):
    command = [script] if script else [sys.executable, "-m", "mcnn_keras.cli.synthetic"]
    return command + [f"--output_dir={tmp_path / 'data'}", "--num_train=13", "--num_val=13",
                      "--height=128", "--width=128", *flags]


@pytest.mark.parametrize("via,log_level", [("module", None), ("module", "2"),
                                           ("console_script", None)])
def test_cpu_start_up_is_quiet(tmp_path, via, log_level):
    script = None
    if via == "console_script":
        script = console_script("mcnn-synthetic")
        if not script:
            pytest.skip("mcnn-synthetic is not installed")
    env = {"TF_CPP_MIN_LOG_LEVEL": log_level} if log_level else {}
    result = run(synthetic_command(script, tmp_path), timeout=300, **env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["train"]["count"] == 13
    for line in result.stderr.splitlines():
        assert not any(noise in line for noise in NOISE), result.stderr[-3000:]


def test_real_errors_still_reach_stderr(tmp_path):
    result = run(synthetic_command(None, tmp_path, "--num_shards=0"), timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "error: --num_shards=0: must be >= 1"
    assert not any(noise in result.stderr for noise in NOISE), result.stderr[-3000:]


BENIGN = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795495974.215210    5729 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off errors "
    "from different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1795495974.215584    5729 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "I0000 00:00:1795495974.258412    5729 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other "
    "operations, rebuild TensorFlow with the appropriate compiler flags.",
]
BENIGN_TF216 = [
    "2026-11-24 07:54:17.812834: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479]"
    " Unable to register cuFFT factory: Attempting to register factory for plugin cuFFT when "
    "one has already been registered",
    "2026-11-24 07:54:17.835084: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:"
    "10575] Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN "
    "when one has already been registered",
    "2026-11-24 07:54:18.689232: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] "
    "TF-TRT Warning: Could not find TensorRT",
]
CUINIT = ("E0000 00:00:1795495976.527566    5729 cuda_platform.cc:52] failed call to cuInit: "
          "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")


def test_startup_filter_drops_exactly_the_known_lines():
    from mcnn_keras.cli import quiet_tf  # pylint: disable=import-outside-toplevel
    keep = quiet_tf.StartupFilter().keep
    assert [line for line in BENIGN + BENIGN_TF216 + [CUINIT] if keep(line.encode())] == []
    for line in ["W0000 00:00:1.0   1 gpu_device.cc:2344] Cannot dlopen some GPU libraries.",
                 "E0000 00:00:1.0   1 some_op.cc:7] a real error",
                 "F0000 00:00:1.0   1 port.cc:153] oneDNN custom operations are on. F is fatal",
                 "Traceback (most recent call last):",
                 BENIGN[4],  # only right after the cpu_feature_guard line
                 "2026-11-24 07:54:17.8: E external/x/cuda_fft.cc:479] Unable to create plan",
                 ""]:
        assert keep(line.encode()), line


def test_cuinit_failure_shows_when_a_driver_was_found():
    from mcnn_keras.cli import quiet_tf  # pylint: disable=import-outside-toplevel
    assert quiet_tf.StartupFilter().keep(CUINIT.encode())


def test_filtered_stderr_passes_everything_else_even_on_abort():
    script = textwrap.dedent("""
        import os, sys
        from mcnn_keras.cli import quiet_tf
        print("before", file=sys.stderr, flush=True)
        with quiet_tf.filtered_stderr():
            for line in sys.argv[1:]:
                os.write(2, line.encode() + b"\\n")
            print("python inside", file=sys.stderr)
            os.write(2, b"F0000 00:00:1.0   1 x.cc:1] Check failed: fatal\\n")
            os.abort()
        """)
    result = subprocess.run([sys.executable, "-c", script, *BENIGN, CUINIT, "a real line"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "before", "a real line", "python inside", "F0000 00:00:1.0   1 x.cc:1] Check failed: fatal"]
