"""End-to-end multi-worker training with the real `mcnn-train` binary.

Every test starts real worker processes on 127.0.0.1 with TF_CONFIG
(`--strategy=multi_worker_mirrored`) on small synthetic 128 x 128 TFRecords:

1. two workers, fit with validation: both exit 0, final weights bitwise equal,
   logged metrics identical; the chief wrote checkpoints, SavedModel, metrics;
   the other worker left nothing in the model dir and cleaned its scratch dir;
2. 2 workers x batch b == 1 worker x batch 2b (1e-5 relative): gradients are
   averaged across workers, not merely kept in sync; with the big dense
   layer's gradient all-reduced and with it built from all-gathered factors,
   and in micro-batches;
3. kill -9 of worker 1 (then of the chief) at a random step of epoch 2: the
   survivor fails within 60 s, and a restart finishes bitwise identical to an
   uninterrupted run;
4. a worker that never comes up: the other fails with a clear message.
"""

import json
import os
import random
import re
import signal
import time

import numpy as np
import pytest

import multiworker_util as mw

pytestmark = pytest.mark.slow

SIZE, TIMEOUT_S = mw.SIZE, mw.TIMEOUT_S
tmpdir_env = mw.tmpdir_env


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 train shards (48 images) and 2 val shards (16), 128 x 128."""
    return mw.write_data(tmp_path_factory.mktemp("mw-data"))


def train_command(data_dir, model_dir, weights, **flags):
    """mcnn-train whose every worker saves its final weights to `weights`."""
    return mw.train_command(data_dir, model_dir, mw.TRAIN_SAVING_WEIGHTS,
                            final_weights_npz=weights, **flags)


def run_job(data_dir, tmp_path, tag, num_workers=2, timeout_s=300, **flags):
    """Trains `num_workers` workers to the end; returns (results, weights, model_dir)."""
    model_dir = tmp_path / f"run-{tag}"
    weights = str(tmp_path / f"weights-{tag}-{{worker}}.npz")
    results = mw.run_training(train_command(data_dir, model_dir, weights, **flags),
                              num_workers, tmp_path, tag, timeout_s)
    return results, [load_weights(weights.format(worker=i)) for i in range(num_workers)], \
        model_dir


def load_weights(path):
    with np.load(path) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def assert_bitwise_equal(a, b, what):
    assert len(a) == len(b) and len(a) > 10
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.shape == y.shape and x.tobytes() == y.tobytes(), (
            f"{what}: tensor {i} differs (max abs diff {np.max(np.abs(x - y))})")


def epoch_metrics(stdout):
    """The per-epoch Keras log lines without timing-dependent fields."""
    lines = [line for line in stdout.splitlines() if re.match(r"\d+/\d+ - ", line)]
    return [re.findall(r"((?:val_)?(?:loss|top1|top5|learning_rate): \S+)", line) for line in lines]


def test_two_workers_fit_with_validation(data, tmp_path):
    results, weights, model_dir = run_job(
        data, tmp_path, "fit", val_files=f"{data}/val-*.tfrecord", tensorboard=True,
        checkpoint_every_steps=4)
    assert_bitwise_equal(weights[0], weights[1], "worker 0 vs worker 1")
    # Logged metrics are global: identical on both workers, validation included.
    logs = [epoch_metrics(r.stdout) for r in results]
    assert len(logs[0]) == 2 and any("val_top1" in m for m in logs[0][0])
    assert logs[0] == logs[1]
    assert "global batch 8" in results[0].stderr
    # Everything in the model dir is the chief's.
    assert sorted(os.listdir(model_dir)) == [
        "checkpoints", "export", "flags.json", "metrics.jsonl", "summary.json",
        "tensorboard", "training_curves.png"]
    checkpoints = sorted(os.listdir(model_dir / "checkpoints"))
    assert "checkpoint" in checkpoints and "ckpt-12.index" in checkpoints, checkpoints
    assert not [f for f in checkpoints if "tmp" in f.lower()], checkpoints
    assert (model_dir / "export" / "saved_model.pb").exists()
    assert len(open(model_dir / "metrics.jsonl").read().splitlines()) >= 2
    for sub in os.listdir(model_dir / "tensorboard"):  # one writer: the chief
        events = os.listdir(model_dir / "tensorboard" / sub)
        assert len(events) == 1, (sub, events)
    # The other worker's scratch dir (under its TMPDIR) was removed.
    assert os.listdir(tmp_path / "tmp-fit-1") == []
    # The chief's exported model reproduces the trained weights.
    summary = json.load(open(model_dir / "summary.json"))
    assert summary["num_workers"] == 2 and summary["global_batch"] == 8


def test_gradients_are_averaged_two_workers_b_equal_one_worker_2b(tmp_path):
    """2 shards: worker w reads shard w; one worker interleaves both shards,
    so each of its batches of 2b holds exactly the two workers' batches of b.

    One pass over the data (8 steps, warmup then decay). Longer runs drift
    apart beyond 1e-5 in a few filters: summing a gradient in another order
    changes weights by ~1e-7, which can flip a near-tie of a max-pool or a
    ReLU at ~0 on the flat background of the images (measured: 3.5e-6 after
    8 steps, then a jump to ~5e-3 in two filters when the batches repeat).
    """
    data_dir = mw.write_data(tmp_path / "data2", num_train=32, num_val=0, num_shards=2,
                             num_val_shards=1, seed=5)
    common = dict(shuffle=False, epochs=1, steps_per_epoch=8, reference_batch_size=2,
                  base_lr=0.02, max_lr=0.1, warmup_start_lr=0.01, warmup_epochs=0.5)
    _, one, _ = run_job(data_dir, tmp_path, "one", num_workers=1, batch_size=4, **common)
    _, half, _ = run_job(data_dir, tmp_path, "half", num_workers=1, batch_size=2,
                         **dict(common, train_files=f"{data_dir}/train-00000-*.tfrecord"))
    worst = 0.0
    # Both ways of syncing the big dense layer (factored_dense.py), and each
    # worker's batch in micro-batches of one image (microbatch.py).
    for mode, log, parts in (("factors", "all-gathered sufficient factors", 1),
                             ("allreduce", "all-reduced", 1),
                             ("factors", "all-gathered sufficient factors", 2)):
        results, two, _ = run_job(data_dir, tmp_path, f"two-{mode}-{parts}", num_workers=2,
                                  batch_size=2, dense_gradient=mode, microbatches=parts,
                                  **common)
        assert f"first dense layer's gradient: {log}" in results[0].stderr
        assert_bitwise_equal(two[0], two[1], f"{mode}: worker 0 vs worker 1")
        diff = max(float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))
                   for a, b in zip(two[0], one[0]))
        assert diff <= 1e-5, (f"{mode}, {parts} micro-batches: 2 workers x 2 vs 1 worker x 4: "
                              f"max relative diff {diff:.3g}")
        worst = max(worst, diff)
    # Training on worker 0's data alone (what 'synchronized but not averaged'
    # would give) is far away: the comparison above is meaningful.
    apart = max(float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))
                for a, b in zip(half[0], one[0]))
    assert apart > 100 * max(worst, 1e-7), (apart, worst)


def _kill_and_resume(data, tmp_path, baseline, victim, tag):
    """Runs until a random step of epoch 2, SIGKILLs `victim`, restarts both."""
    steps_per_epoch = 4
    flags = dict(epochs=3, steps_per_epoch=steps_per_epoch, checkpoint_every_steps=1)
    model_dir = tmp_path / f"run-{tag}"
    weights = str(tmp_path / f"weights-{tag}-{{worker}}.npz")
    kill_after = steps_per_epoch + random.randint(1, steps_per_epoch - 1)
    env = tmpdir_env(tmp_path, tag)
    command = train_command(data, model_dir, weights, **flags)
    results = mw.kill_at_checkpoint(command, env,
                                    model_dir / "checkpoints" / f"ckpt-{kill_after}.index",
                                    victim=victim)
    survivor = results[1 - victim]
    context = f"killed worker {victim} after checkpoint {kill_after}\n" + \
        mw.format_results(results)
    assert not survivor.timed_out and survivor.returncode != 0, context
    assert survivor.seconds < 60, context  # counted from the kill
    assert re.search(r"^error: lost contact with another worker .*Cause: \S", survivor.stderr,
                     re.M), context
    # Restart both: resume from the chief's latest checkpoint, finish.
    results = mw.run_workers(command, mw.tf_configs(mw.free_ports(2)), timeout_s=300,
                             extra_env=env)
    assert all(r.returncode == 0 for r in results), context + mw.format_results(results)
    assert "resumed from step" in results[0].stderr, mw.format_results(results)
    resumed = [load_weights(weights.format(worker=i)) for i in range(2)]
    assert_bitwise_equal(resumed[0], resumed[1], f"{context}\nworker 0 vs worker 1")
    assert_bitwise_equal(resumed[0], baseline, f"{context}\nresumed vs uninterrupted")
    return kill_after


def test_kill_worker_then_chief_and_resume_bitwise(data, tmp_path):
    _, weights, _ = run_job(data, tmp_path, "baseline", epochs=3, steps_per_epoch=4,
                            checkpoint_every_steps=1)
    assert_bitwise_equal(weights[0], weights[1], "baseline workers")
    _kill_and_resume(data, tmp_path, weights[0], victim=1, tag="kill-worker")
    _kill_and_resume(data, tmp_path, weights[0], victim=0, tag="kill-chief")


def test_worker_that_never_comes_up_fails_fast_with_message(data, tmp_path):
    configs = mw.tf_configs(mw.free_ports(2))
    command = train_command(data, tmp_path / "run", "", startup_timeout=15)
    started = time.monotonic()
    results = mw.run_workers(command, configs[:1], timeout_s=120)  # worker 1 never starts
    seconds = time.monotonic() - started
    result = results[0]
    assert not result.timed_out and result.returncode != 0, mw.format_results(results)
    assert seconds < 60, seconds
    # TensorFlow's own C++ error logs may follow; our one line is there.
    assert re.search(r"^error: not all 2 workers came up within 15", result.stderr,
                     re.M), result.stderr[-3000:]


def test_sigterm_to_one_worker_makes_all_save_and_stop_then_resume_bitwise(data, tmp_path):
    """Preemption: SIGTERM reaches only worker 1; the workers agree, the chief
    saves a checkpoint at the same step, all exit 143; a restart finishes
    with the weights of an uninterrupted run."""
    flags = dict(epochs=3, steps_per_epoch=6, checkpoint_every_steps=5)
    _, baseline, _ = run_job(data, tmp_path, "straight", **flags)
    model_dir = tmp_path / "run-preempted"
    weights = str(tmp_path / "weights-preempted-{worker}.npz")
    command = train_command(data, model_dir, weights, **flags)
    env = tmpdir_env(tmp_path, "preempted")
    configs = mw.tf_configs(mw.free_ports(2))
    procs = [mw.start_worker(command, configs[i], env(i)) for i in range(2)]
    try:
        marker = model_dir / "checkpoints" / "ckpt-5.index"
        deadline = time.monotonic() + 240
        while not marker.exists() and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs)
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGTERM)
        results = mw.wait_workers(procs, 120)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    context = mw.format_results(results)
    assert [r.returncode for r in results] == [143, 143], context
    assert all("SIGTERM: saved" in r.stderr for r in results), context
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert 5 < int(latest.rsplit("-", 1)[1]) < 18, (latest, context)
    assert not (model_dir / "export").exists()
    results = mw.run_workers(command, mw.tf_configs(mw.free_ports(2)), timeout_s=300,
                             extra_env=env)
    assert all(r.returncode == 0 for r in results), mw.format_results(results)
    assert_bitwise_equal(load_weights(weights.format(worker=0)), baseline[0],
                         "resumed after SIGTERM vs uninterrupted")
