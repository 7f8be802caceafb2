"""Bad inputs to the binaries: one line naming the culprit, exit 1, nothing earlier lost.

Covers issue 8's items 3 (one run per model_dir: the lock), 4 (re-runs and
flags.json), 10 and 11 (paths that are files or read-only, bad SavedModels,
out-of-range flags, another image size). Every binary runs in its own process.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid

import numpy as np
import pytest

from mcnn_keras.io import records
from mcnn_keras.data.bbbc021 import fixture
from mcnn_keras.train.run_dir import LOCK
from cli_util import assert_one_line_error, run_binary, run_train, train_command, tree_digest
from data_util import bars_split_dir

pytestmark = pytest.mark.slow

CAN_TRY_READ_ONLY = os.path.isdir("/sys") and os.path.isdir("/proc/1")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bars_split_dir(tmp_path_factory.mktemp("bars"), 32, 16, train_shards=2)


def train_flags(data_dir, model_dir, epochs=1):
    return [f"--train_files={data_dir}/train-*.tfrecord",
            f"--val_files={data_dir}/val-*.tfrecord", f"--model_dir={model_dir}",
            f"--epochs={epochs}", "--batch_size=4", "--steps_per_epoch=8"]


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory):
    """A finished 128x128 run (1 epoch of 8 steps); tests must leave it as it is."""
    run = tmp_path_factory.mktemp("finished") / "run"
    result = run_train(*train_flags(data_dir, run))
    assert result.returncode == 0, result.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def bbbc021_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bbbc021")
    fixture.write_fixture(str(directory), plates=1)
    return directory


# --- Flags out of range (item 11) ----------------------------------------------------

@pytest.mark.parametrize("flag", ["--batch_size=-1", "--epochs=0", "--epochs=-2",
                                  "--steps_per_epoch=-1", "--num_classes=-1", "--channels=-1",
                                  "--keep_checkpoints=0"])
def test_out_of_range_flags_name_the_flag(data_dir, tmp_path, flag):
    assert_one_line_error(run_train(*train_flags(data_dir, tmp_path / "run"), flag),
                          f"error: {flag}: must be")
    assert not (tmp_path / "run").exists()  # checked before any work


# --- Output paths that are files or read-only (item 10) ------------------------------

BINARIES = {  # binary -> (its output flag, other flags it needs)
    "mcnn_keras.cli.train": ("model_dir", lambda d, run, bbbc: train_flags(d, "x")[:2]),
    "mcnn_keras.cli.evaluate": ("output_dir", lambda d, run, bbbc: [f"--model_dir={run}"]),
    "mcnn_keras.cli.synthetic": ("output_dir", lambda d, run, bbbc: [
        "--num_train=13", "--num_val=13"]),
    "mcnn_keras.cli.convert_bbbc021": ("output_dir", lambda d, run, bbbc: [
        f"--bbbc021_dir={bbbc}", "--progress=false"]),
}


@pytest.mark.parametrize("binary", sorted(BINARIES))
def test_an_output_path_that_is_a_file_names_the_flag(binary, data_dir, finished_run,
                                                      bbbc021_dir, tmp_path):
    flag, others = BINARIES[binary]
    users = tmp_path / "users-file"
    users.write_text("keep me")
    before = tree_digest(finished_run)
    assert_one_line_error(run_binary(binary, *others(data_dir, finished_run, bbbc021_dir),
                                     f"--{flag}={users}"),
                          f"--{flag}={users}: exists and is not a directory")
    assert users.read_text() == "keep me" and os.listdir(tmp_path) == ["users-file"]
    assert tree_digest(finished_run) == before


@pytest.mark.skipif(not CAN_TRY_READ_ONLY, reason="needs Linux /sys and /proc")
@pytest.mark.parametrize("binary", sorted(BINARIES))
def test_an_output_path_on_a_read_only_file_system_names_the_flag(
        binary, data_dir, finished_run, bbbc021_dir):
    # Tests may run as root, for whom chmod 0o555 changes nothing: /sys refuses
    # new directories and /proc/1 new files to everyone.
    flag, others = BINARIES[binary]
    path = f"/sys/mcnn-test-{uuid.uuid4().hex}"
    assert_one_line_error(run_binary(binary, *others(data_dir, finished_run, bbbc021_dir),
                                     f"--{flag}={path}"),
                          f"--{flag}={path}: cannot create it")
    if binary == "mcnn_keras.cli.train":
        assert_one_line_error(run_binary(binary, *others(data_dir, finished_run, bbbc021_dir),
                                         "--model_dir=/proc/1"),
                              "--model_dir=/proc/1: cannot write there")


# --- mcnn-evaluate --saved_model (item 10) -------------------------------------------

@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "file"])
def test_evaluate_names_a_missing_or_garbage_saved_model(kind, data_dir, tmp_path):
    path = tmp_path / "model"
    if kind != "missing":
        path.mkdir() if kind != "file" else path.write_text("no model")
    if kind == "garbage":
        (path / "saved_model.pb").write_bytes(b"\x07garbage")
    result = run_binary("mcnn_keras.cli.evaluate", f"--saved_model={path}",
                        f"--files={data_dir}/val-*.tfrecord")
    expected = {"missing": "no such SavedModel directory",
                "file": "is a file, not a SavedModel directory"}.get(
                    kind, "is not a SavedModel written by mcnn-export")
    assert_one_line_error(result, f"error: {path}", expected)
    assert not (path / "eval").exists()


# --- Re-runs on a finished run (items 4 and 11) --------------------------------------

def test_a_failed_rerun_keeps_flags_json_and_the_run_evaluable(data_dir, finished_run,
                                                              tmp_path):
    before = tree_digest(finished_run)
    good = train_flags(data_dir, finished_run)
    assert_one_line_error(run_train(*good, f"--train_files={tmp_path}/nowhere-*.tfrecord"),
                          "no files match", "nowhere-*.tfrecord")
    # Other data that would fail only once training started (label 99 at the
    # first step of epoch 2): refused up front, flags.json untouched.
    label = tmp_path / "label.tfrecord"
    records.write_shard(str(label), [records.encode_example(
        np.zeros((128, 128, 3), np.uint8), 99)] * 8)
    assert_one_line_error(run_train(*good, f"--train_files={label}", "--epochs=2"),
                          f"train_files '{data_dir}/train-*.tfrecord' -> '{label}'")
    assert tree_digest(finished_run) == before  # flags.json byte-identical
    result = run_binary("mcnn_keras.cli.evaluate", f"--model_dir={finished_run}",
                        f"--output_dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["images"] == 16


def test_a_changed_schedule_flag_is_refused_naming_it(data_dir, finished_run):
    before = tree_digest(finished_run)
    assert_one_line_error(run_train(*train_flags(data_dir, finished_run), "--base_lr=0.002"),
                          f"--model_dir={finished_run}", "base_lr 0.001 -> 0.002")
    assert tree_digest(finished_run) == before


def test_another_image_size_is_refused_in_those_words(data_dir, finished_run):
    before = tree_digest(finished_run)
    assert_one_line_error(run_train(*train_flags(data_dir, finished_run), "--height=256",
                                    "--width=256"),
                          "this model_dir holds a 128x128 run; you asked for 256x256")
    assert tree_digest(finished_run) == before


def test_more_epochs_continue_the_run_and_are_recorded(data_dir, tmp_path):
    run = tmp_path / "run"
    assert run_train(*train_flags(data_dir, run)).returncode == 0
    result = run_train(*train_flags(data_dir, run, epochs=2))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming at step 8 with changed flags: epochs 1 -> 2" in result.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((run / "summary.json").read_text())["steps"] == 16
    flags = json.loads((run / "flags.json").read_text())
    assert flags["epochs"] == 2
    assert flags["changes"][0]["step"] == 8 and flags["changes"][0]["flags"] == {
        "epochs": [1, 2]}


def test_a_file_in_place_of_the_export_fails_before_training(data_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "export").write_text("keep me")
    assert_one_line_error(run_train(*train_flags(data_dir, run)),
                          f"{run / 'export'} exists and is not a directory")
    assert (run / "export").read_text() == "keep me"
    assert sorted(os.listdir(run)) == ["export"]  # no checkpoint, no flags.json


# --- Two runs on one model_dir (item 3) ----------------------------------------------

def wait_for_lock(process, run, timeout=120):
    """Waits until `process` holds `run`'s lock (its pid in the lock file)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        try:
            if json.loads((run / LOCK).read_text())["pid"] == process.pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    pytest.fail(f"{process.pid} never took the lock of {run}")


def test_a_second_run_on_a_locked_model_dir_fails_at_once(data_dir, tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(train_command(*train_flags(data_dir, run, epochs=5)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lock(first, run)
        started = time.time()
        second = run_train(*train_flags(data_dir, run, epochs=5), "--seed=7")
        took = time.time() - started
        assert first.poll() is None, "the first run ended before the second was refused"
        assert_one_line_error(second, f"locked by pid {first.pid} on host "
                                      f"{socket.gethostname()} since ")
        assert took < 60, took  # at once: TensorFlow's import is most of it
        _, stderr = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr[-3000:]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 5
    assert json.loads((run / "summary.json").read_text())["steps"] == 40
    assert json.loads((run / "flags.json").read_text())["seed"] == 0
    assert not (run / LOCK).exists()  # released at the end


def test_a_killed_holders_lock_is_taken_over(data_dir, tmp_path):
    run = tmp_path / "run"
    killed = subprocess.Popen(train_command(*train_flags(data_dir, run, epochs=5)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_lock(killed, run)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert (run / LOCK).exists()  # left by kill -9; the kernel dropped the flock
    result = run_train(*train_flags(data_dir, run, epochs=1))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"previous holder pid {killed.pid} on host {socket.gethostname()}"
            in result.stderr and "is gone" in result.stderr), result.stderr[-3000:]
    assert not (run / LOCK).exists()
    shutil.rmtree(run)
