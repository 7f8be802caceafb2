"""The next run removes what killed or failed attempts left behind: ours only.

Each kind is made the way it arises (an atomic write's temporary, TensorFlow's
own checkpoint temporaries, a real worker's scratch dir whose process died),
next to look-alikes that are not ours; then a real `mcnn-train` runs.
"""

import os
import socket
import subprocess
import sys
import uuid

import pytest
import tensorflow as tf

from data_util import bars_split_dir

pytestmark = pytest.mark.slow

SCRATCH = ("from mcnn_keras.core import cluster; from mcnn_keras.train import distribute; "
           "task = cluster.TaskInfo('worker', 1, 1, 2, False); "
           "print(distribute.writer_dir('unused', task), flush=True)")


def _scratch_dir(tmpdir, then=""):
    """A non-chief worker's real scratch dir in `tmpdir`; (path, its process)."""
    proc = subprocess.Popen([sys.executable, "-c", SCRATCH + then], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "TMPDIR": str(tmpdir)})
    path = proc.stdout.readline().strip()
    assert os.path.isdir(path) and os.path.dirname(path) == str(tmpdir), path
    return path, proc


def _tf_checkpoint_parts(directory):
    """What a save killed before the merge leaves: TensorFlow's `<prefix>_temp/part-*`."""
    tf.train.Checkpoint(v=tf.Variable([1.0, 2.0])).write(f"{directory}/part-00000-of-00001")
    return directory


def _dead_writers_temporaries(*paths):
    """`atomic.temporary_path` of each path, named by a process that has exited."""
    code = ("import sys; from mcnn_keras.io import atomic; "
            "print(*(atomic.temporary_path(p) for p in sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *map(str, paths)], check=True,
                          capture_output=True, text=True).stdout.split()


def _touch(*paths):
    for path in paths:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    return list(paths)


def test_a_run_removes_earlier_attempts_leftovers_and_nothing_else(tmp_path):
    data = bars_split_dir(tmp_path / "data", 16, 8, train_shards=2)
    run, tmpdir = tmp_path / "run", tmp_path / "tmp"
    ckpts = run / "checkpoints"
    os.makedirs(ckpts)
    os.makedirs(tmpdir)
    hex32, host = uuid.uuid4().hex, socket.gethostname()

    # An export killed mid-way and a killed summary write (a dead process named them).
    export_tmp, summary_tmp = _dead_writers_temporaries(run / "export", run / "summary.json")
    os.makedirs(export_tmp)
    ours = [export_tmp, *_touch(summary_tmp)]
    ours.append(_tf_checkpoint_parts(str(ckpts / "ckpt-5_temp")))  # a save hit a full disk
    ours += _touch(str(ckpts / "ckpt-5.index.tempstate1234567890"),
                   str(ckpts / f"checkpoint.tmp{hex32}"))
    dead, proc = _scratch_dir(tmpdir)  # a worker that died before its clean-up
    proc.wait()
    ours.append(dead)

    theirs = _touch(str(run / "export.tmp-notes"), str(run / ".export.tmp-notes"),
                    str(run / "notes.txt"), str(ckpts / "ckpt-7_temp" / "notes.txt"),
                    str(ckpts / "ckpt-3_temp.txt"), str(ckpts / f"checkpoint.tmp{hex32}.bak"),
                    str(tmpdir / f"mcnn-worker1-scratch-999999999@{host}-abcd1234.txt"))
    theirs += [str(tmpdir / "mcnn-worker1-scratch-abcd1234"),  # old naming: owner unknown
               str(tmpdir / f"mcnn-worker1-scratch-{proc.pid}@not-{host}-abcd1234")]
    for path in theirs[-2:]:
        os.makedirs(path)
    live, sleeper = _scratch_dir(tmpdir, "; import time; time.sleep(600)")
    theirs.append(live)  # a worker still running: never touched
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mcnn_keras.cli.train", "--verbose=2", "--tensorboard=false",
             f"--train_files={data}/train-*.tfrecord", "--val_files=", f"--model_dir={run}",
             "--batch_size=4", "--epochs=1", "--steps_per_epoch=2"],
            capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmpdir)})
        assert result.returncode == 0, result.stderr[-3000:]
        assert [p for p in ours if os.path.exists(p)] == []
        assert [p for p in theirs if not os.path.exists(p)] == []
        said = [line for line in result.stderr.splitlines() if "leftover" in line]
        assert len(said) == 1 and all(p in said[0] for p in ours), result.stderr[-3000:]
        assert (run / "export" / "saved_model.pb").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
