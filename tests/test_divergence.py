"""Divergence is a failure: one `error:` line, exit 1, nothing good lost, nothing NaN saved."""

import json
import re
import time

import keras
import numpy as np
import pytest

import multiworker_util as mw
from cli_util import assert_one_line_error, run_train, tree_digest
from data_util import bars_split_dir
from mcnn_keras.train.callbacks.divergence import DivergenceError
from mcnn_keras.train import checkpoints as train_checkpoints

pytestmark = pytest.mark.slow

ABSURD = {"base_lr": 1e30, "max_lr": 1e30, "warmup_epochs": 0.0}
ABSURD_FLAGS = [f"--{name}={value}" for name, value in ABSURD.items()]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bars_split_dir(tmp_path_factory.mktemp("bars"), 32, 16, train_shards=2)


def _diverged_step(result):
    last = result.stderr.strip().splitlines()[-1]
    match = re.match(r"error: training diverged at step (\d+) \(epoch (\d+), learning rate "
                     r"(\S+)\): ", last)
    assert match, last
    return int(match.group(1)), int(match.group(2)), float(match.group(3))


def test_a_run_that_diverges_on_resume_fails_and_keeps_the_good_run(data_dir, tmp_path):
    run = tmp_path / "run"
    flags = [f"--train_files={data_dir}/train-*.tfrecord", "--val_files=", f"--model_dir={run}",
             "--batch_size=4", "--steps_per_epoch=4", "--seed=1"]
    good = run_train(*flags, "--epochs=2", "--checkpoint_every_steps=2")
    assert good.returncode == 0, good.stderr[-3000:]
    # A resume may only extend the schedule (item 4), so the run's flags.json
    # says it always had the absurd rate: as a run that diverges late would.
    values = json.loads((run / "flags.json").read_text())
    (run / "flags.json").write_text(json.dumps({**values, **ABSURD}))
    before = {k: v for k, v in tree_digest(run).items() if k != "flags.json"}
    assert {"checkpoints/ckpt-4.index", "checkpoints/ckpt-6.index", "checkpoints/ckpt-8.index",
            "checkpoints/checkpoint", "export/saved_model.pb"} <= set(before)

    # Saves only at the end of epoch 3 (step 12): the old code wrote NaN
    # checkpoints there and at 16, rotating ckpt-4 and ckpt-6 out, and exported.
    result = run_train(*flags, *ABSURD_FLAGS, "--epochs=4", "--checkpoint_every_steps=0")
    assert_one_line_error(result, "--base_lr", "--warmup_epochs")
    step, epoch, lr = _diverged_step(result)
    assert 8 < step < 12 and epoch == 3 and lr > 1e20, result.stderr[-1000:]
    after = {k: v for k, v in tree_digest(run).items() if k != "flags.json"}
    assert after == before  # checkpoints, their index, the export, metrics: byte-identical


def test_checkpointer_refuses_non_finite_weights(tmp_path):
    """The guard under every save (periodic, epoch end, SIGTERM): nothing is written."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    saver = train_checkpoints.Checkpointer(model, optimizer, str(tmp_path), max_to_keep=1)
    good = saver.save(epoch=0)
    assert good.endswith("ckpt-0")
    before = tree_digest(tmp_path)
    optimizer.iterations.assign(1)
    kernel = model.layers[0].kernel
    kernel.assign(np.where(np.eye(4, 3) > 0, np.inf, 0.0).astype("float32"))
    with pytest.raises(DivergenceError, match=r"at step 1 .*dense/kernel.*refused"):
        saver.save(epoch=0)
    assert tree_digest(tmp_path) == before  # ckpt-0 neither replaced nor rotated out
    kernel.assign(np.zeros((4, 3), "float32"))
    assert saver.save(epoch=0).endswith("ckpt-1")


def test_all_workers_stop_together_on_divergence(tmp_path):
    data = mw.write_data(tmp_path / "data", num_train=32, num_val=0, num_shards=2,
                         num_val_shards=1)
    model_dir = tmp_path / "run"
    command = mw.train_command(data, model_dir, epochs=3, steps_per_epoch=4,
                               **{k: v for k, v in ABSURD.items()})
    started = time.monotonic()
    results = mw.run_workers(command, mw.tf_configs(mw.free_ports(2)),
                             timeout_s=240, extra_env=mw.tmpdir_env(tmp_path, "nan"))
    elapsed = time.monotonic() - started
    assert not any(r.timed_out for r in results), mw.format_results(results)
    steps = set()
    for r in results:
        assert_one_line_error(r, "--base_lr")
        steps.add(_diverged_step(r)[0])
    assert len(steps) == 1, mw.format_results(results)  # the same step on every worker
    # Together, well within the collective timeout: nobody waited for a peer
    # that had left (that would take TIMEOUT_S and end in another error).
    seconds = [r.seconds for r in results]
    assert max(seconds) - min(seconds) < mw.TIMEOUT_S / 2 and elapsed < 150, seconds
    checkpoints = model_dir / "checkpoints"
    names = sorted(p.name for p in checkpoints.iterdir()) if checkpoints.exists() else []
    assert not [n for n in names if n.startswith("ckpt-")], names
    assert not (model_dir / "export").exists() and not (model_dir / "summary.json").exists()
