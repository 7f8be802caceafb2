"""End-to-end single-process training: outputs, exact resume, SIGTERM, target."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mcnn_keras.train import training
from mcnn_keras.train.run_dir import read_metrics
from mcnn_keras.train.schedule import LinearScalingSchedule
from data_util import bars_split_dir, checkpoint_weights, small_run_config

pytestmark = pytest.mark.slow


def test_fit_phases_resume_mid_epoch_with_a_partial_epoch_first():
    Phase = training.Phase
    assert training.plan_fit_phases(0, 10, 3) == [Phase(0, 0, 3, 10)]
    assert training.plan_fit_phases(23, 10, 3) == [Phase(23, 2, 3, 7)]
    assert training.plan_fit_phases(13, 10, 3) == [Phase(13, 1, 2, 7), Phase(20, 2, 3, 10)]
    assert training.plan_fit_phases(20, 10, 3) == [Phase(20, 2, 3, 10)]
    assert training.plan_fit_phases(30, 10, 3) == []  # finished: nothing to fit
    assert training.plan_fit_phases(35, 10, 3) == []


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bars_split_dir(tmp_path_factory.mktemp("bars"), 104, 26, train_shards=4)


def test_training_writes_metrics_plots_checkpoints_tensorboard_and_export(data_dir, tmp_path):
    cfg = small_run_config(data_dir, tmp_path / "run", epochs=3, checkpoint_every_steps=5)
    summary = training.train(cfg)
    run = tmp_path / "run"
    history = read_metrics(run / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for key in ("loss", "top1", "top5", "val_top1", "val_top5", "learning_rate", "images_per_s", "wall_s"):
        assert all(h[key] is not None for h in history), key
    assert history[-1]["val_top1"] > 0.5  # the bars are easy: it really learns
    steps_per_epoch = 104 // 8
    schedule = LinearScalingSchedule(base_lr=0.02, global_batch=8, reference_batch_size=8,
                                     total_steps=3 * steps_per_epoch,
                                     warmup_steps=round(0.5 * steps_per_epoch), end_lr=1e-4)
    assert history[0]["learning_rate"] == pytest.approx(schedule(steps_per_epoch - 1), rel=1e-5)
    assert summary["steps"] == 3 * steps_per_epoch
    assert json.loads((run / "flags.json").read_text())["plan"]["global_batch"] == 8
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "export" / "saved_model.pb").exists()
    assert (run / "checkpoints" / "checkpoint").exists()
    assert any("events.out.tfevents" in f for _, _, files in os.walk(run / "tensorboard")
               for f in files)
    assert not [f for f in os.listdir(run) if ".tmp-" in f]


def test_sigterm_saves_and_the_resumed_run_matches_an_uninterrupted_one(data_dir, tmp_path):
    flags = [f"--train_files={data_dir}/train-*.tfrecord", f"--val_files={data_dir}/val-*.tfrecord",
             "--epochs=2", "--base_lr=0.02", "--warmup_epochs=0.5", "--seed=3", "--verbose=2",
             "--checkpoint_every_steps=3", "--tensorboard=false"]
    training.train(small_run_config(data_dir, tmp_path / "straight", tensorboard=False,
                                    checkpoint_every_steps=3))
    command = [sys.executable, "-m", "mcnn_keras.cli.train",
               f"--model_dir={tmp_path / 'preempted'}"] + flags
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    index = tmp_path / "preempted" / "checkpoints" / "checkpoint"
    deadline = time.time() + 120
    while not index.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output
    assert "SIGTERM: saved" in output
    # Stopped at once: the unfinished epoch is neither validated nor logged.
    assert "val_top1" not in output.split("SIGTERM: saved")[1], output
    stopped = int(open(index).read().split('"')[1].rsplit("-", 1)[1])
    assert 0 < stopped < 26 and stopped % 13, f"expected a mid-epoch save, got step {stopped}"
    assert not (tmp_path / "preempted" / "export").exists()

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from step {stopped}" in resumed.stderr
    straight = checkpoint_weights(tmp_path / "straight")
    again = checkpoint_weights(tmp_path / "preempted")
    assert straight.keys() == again.keys() and len(straight) > 2 * 48
    for name in straight:
        np.testing.assert_array_equal(straight[name], again[name], err_msg=name)
    epochs = [h["epoch"] for h in read_metrics(tmp_path / "preempted" / "metrics.jsonl")]
    assert epochs == [1, 2]


def test_stops_at_target_accuracy(data_dir, tmp_path):
    summary = training.train(small_run_config(data_dir, tmp_path / "run", epochs=20,
                                              target_accuracy=0.5, tensorboard=False))
    assert summary["target_reached_epoch"] is not None and summary["target_reached_epoch"] < 20
    assert summary["time_to_target_s"] > 0
    history = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len(history) == summary["target_reached_epoch"]
    assert history[-1]["val_top1"] >= 0.5 and history[-1]["time_to_target_s"] > 0
