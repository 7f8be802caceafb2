"""A damaged checkpoint never means a silent restart from step 0.

Training falls back to the newest intact checkpoint with a warning naming the
damaged file; export and evaluation refuse in one line naming it (and the
checkpoint to pass instead); with no intact checkpoint left, training fails
naming the files. Nothing earlier is lost.
"""

import os
import shutil

import pytest

from cli_util import assert_one_line_error, run_binary, run_train, tree_digest
from data_util import bars_split_dir

pytestmark = pytest.mark.slow

DATA = "ckpt-8.data-00000-of-00001"


def _missing_index(ckpts):
    os.remove(ckpts / "ckpt-8.index")
    return "ckpt-8.index", 6


def _truncated_data(ckpts):
    os.truncate(ckpts / DATA, 1000)
    return DATA, 6


def _flipped_byte(ckpts):  # caught by the tensors' CRCs
    data = bytearray((ckpts / DATA).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (ckpts / DATA).write_bytes(bytes(data))
    return DATA, 6


def _garbled_index(ckpts):  # TensorFlow ignores it: the old code restarted at 0
    (ckpts / "checkpoint").write_text("model_checkpoint_path: {{{ garbage\n")
    return "checkpoint", 8


DAMAGE = {"missing_index": _missing_index, "truncated_data": _truncated_data,
          "flipped_byte": _flipped_byte, "garbled_index": _garbled_index}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bars_split_dir(tmp_path_factory.mktemp("bars"), 32, 16, train_shards=2)


def _flags(data_dir, run):
    return [f"--train_files={data_dir}/train-*.tfrecord", f"--val_files={data_dir}/val-*.tfrecord",
            f"--model_dir={run}", "--batch_size=4", "--steps_per_epoch=4", "--seed=1",
            "--checkpoint_every_steps=2"]


@pytest.fixture(scope="module")
def good_run(data_dir, tmp_path_factory):
    """A finished run: ckpt-4, -6, -8 (kept 3), an export, metrics."""
    run = tmp_path_factory.mktemp("good") / "run"
    result = run_train(*_flags(data_dir, run), "--epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "checkpoints" / "ckpt-8.index").exists()
    return run


def _damaged_copy(good_run, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    name, fallback_step = DAMAGE[damage](run / "checkpoints")
    return run, str(run / "checkpoints" / name), fallback_step


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_training_falls_back_loudly_to_the_newest_intact_checkpoint(
        damage, good_run, data_dir, tmp_path):
    run, damaged, fallback_step = _damaged_copy(good_run, tmp_path, damage)
    result = run_train(*_flags(data_dir, run), "--epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines()
                if "damaged checkpoint file" in line and damaged in line]
    assert warnings, result.stderr[-3000:]
    assert f"resumed from step {fallback_step}" in result.stderr, result.stderr[-3000:]
    assert "Epoch 1/3" not in result.stdout  # no restart from step 0
    # The damaged one was saved again, and the manager still rotates every
    # old checkpoint out (a garbled index is rebuilt): nothing is left behind.
    assert sorted(os.listdir(run / "checkpoints")) == [
        "checkpoint", "ckpt-10.data-00000-of-00001", "ckpt-10.index",
        "ckpt-12.data-00000-of-00001", "ckpt-12.index",
        "ckpt-8.data-00000-of-00001", "ckpt-8.index"]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_export_and_evaluate_refuse_a_damaged_latest_checkpoint(damage, good_run, tmp_path):
    run, damaged, fallback_step = _damaged_copy(good_run, tmp_path, damage)
    before = tree_digest(run)
    suggestion = f"--checkpoint={run / 'checkpoints'}/ckpt-{fallback_step}"
    assert_one_line_error(run_binary("mcnn_keras.cli.export", f"--model_dir={run}"),
                          damaged, suggestion)
    assert_one_line_error(run_binary("mcnn_keras.cli.evaluate", f"--model_dir={run}"),
                          damaged, suggestion)
    assert tree_digest(run) == before  # the old export (and everything else) untouched


def test_an_explicit_checkpoint_is_checked_too_and_the_suggested_one_exports(
        good_run, tmp_path):
    run, damaged, fallback_step = _damaged_copy(good_run, tmp_path, "truncated_data")
    before = tree_digest(run)
    assert_one_line_error(run_binary("mcnn_keras.cli.export", f"--model_dir={run}",
                                     f"--checkpoint={run / 'checkpoints'}/ckpt-8"), damaged)
    assert tree_digest(run) == before
    result = run_binary("mcnn_keras.cli.export", f"--model_dir={run}",
                        f"--checkpoint={run / 'checkpoints'}/ckpt-{fallback_step}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ckpt-{fallback_step}" in result.stdout


def test_training_fails_naming_the_files_when_no_checkpoint_is_intact(
        good_run, data_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    for step in (4, 6, 8):
        os.truncate(run / "checkpoints" / f"ckpt-{step}.data-00000-of-00001", 100)
    before = tree_digest(run)
    result = run_train(*_flags(data_dir, run), "--epochs=3")
    assert_one_line_error(result, "no checkpoint in", "can be restored",
                          *(f"ckpt-{step}.data-00000-of-00001" for step in (4, 6, 8)))
    assert {k: v for k, v in tree_digest(run).items() if k != "flags.json"} == {
        k: v for k, v in before.items() if k != "flags.json"}
