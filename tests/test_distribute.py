"""mcnn_keras.train.distribute: strategies, multi-worker mode, per-worker input, writer dirs.

TF_CONFIG validation and Slurm are `mcnn_keras.core.cluster` (test_cluster.py).
"""

import json
import os
import re
import socket
import subprocess
import time

import pytest
import tensorflow as tf

from mcnn_keras.core import cluster
from mcnn_keras.train import distribute
from data_util import write_indexed_dataset
import multiworker_util as mw

_TWO_WORKERS = ["127.0.0.1:2222", "127.0.0.1:2223"]

# (TF_CONFIG text, the words its one-line error must contain); every case of
# the validation is in test_cluster.py, these go through a real process.
BAD_CONFIGS = {
    "malformed_json": ('{"cluster": {"worker": ["a:1"]}, "task": ', "not valid JSON"),
    "missing_cluster": (json.dumps({"task": {"type": "worker", "index": 1}}),
                        "no 'cluster' object"),
    "index_out_of_range": (json.dumps({"cluster": {"worker": _TWO_WORKERS},
                                       "task": {"type": "worker", "index": 2}}),
                           "task.index 2 is out of range"),
    "no_port": (json.dumps({"cluster": {"worker": ["127.0.0.1:2222", "host2"]},
                            "task": {"type": "worker", "index": 1}}),
                "address 'host2' has no valid port"),
}


@pytest.fixture
def no_tf_config(monkeypatch):
    """A single process: no TF_CONFIG, whatever the caller's environment."""
    monkeypatch.delenv("TF_CONFIG", raising=False)


def test_make_strategy_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        distribute.make_strategy("tpu")
    with pytest.raises(ValueError, match="unknown collective implementation 'NCCL'"):
        distribute.make_strategy("multi_worker_mirrored", "NCCL")


def test_single_process_strategies():
    for name in ("default", "one_device", "mirrored"):
        strategy = distribute.make_strategy(name)
        assert strategy.num_replicas_in_sync == 1
        assert distribute.task_info(strategy) == cluster.SINGLE_PROCESS
    assert isinstance(distribute.make_strategy("one_device"), tf.distribute.OneDeviceStrategy)


def test_in_multi_worker_mode_false_in_a_single_process(no_tf_config):
    """Every single-process strategy, as TensorFlow's private check says."""
    assert not distribute.in_multi_worker_mode(None)
    assert distribute.task_info(None) == cluster.SINGLE_PROCESS
    for name in distribute.STRATEGIES:
        strategy = distribute.make_strategy(name)
        private = strategy.extended._in_multi_worker_mode()  # pylint: disable=protected-access
        assert distribute.in_multi_worker_mode(strategy) is private is False, name
    single_worker = distribute.make_strategy("multi_worker_mirrored")
    assert isinstance(single_worker, tf.distribute.MultiWorkerMirroredStrategy)
    assert distribute.task_info(single_worker) == cluster.SINGLE_PROCESS


def test_per_worker_dataset_single_process(no_tf_config):
    calls = []

    def make(worker, num_workers, batch):
        calls.append((worker, num_workers, batch))
        return tf.data.Dataset.range(10).batch(batch)

    for name in distribute.STRATEGIES:
        strategy = distribute.make_strategy(name)
        ds = distribute.per_worker_dataset(strategy, make, 4)
        assert isinstance(ds, tf.data.Dataset), name  # returned as it is
        assert next(iter(ds)).numpy().tolist() == [0, 1, 2, 3]
    assert calls == [(0, 1, 4)] * len(distribute.STRATEGIES)


MAKE_STRATEGY = ("from mcnn_keras.train import distribute; "
                 "distribute.make_strategy('multi_worker_mirrored', collective_timeout_s=10); "
                 "print('built')")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["malformed_json", "missing_cluster", "index_out_of_range",
                                  "no_port"])
def test_bad_tf_config_in_real_process_fails_fast(name):
    """Through the binary path: no TensorFlow hang, exit non-zero, the message."""
    text, words = BAD_CONFIGS[name]
    started = time.monotonic()
    result = subprocess.run(mw.python_command(MAKE_STRATEGY), env=mw.worker_env(text),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert time.monotonic() - started < 30
    assert f"ValueError: TF_CONFIG" in result.stderr and words in result.stderr


@pytest.mark.slow
def test_missing_peer_fails_within_timeout_instead_of_hanging():
    """Worker 0 of 2 with no worker 1: fails after the timeout, both roles."""
    configs = mw.tf_configs(mw.free_ports(2))
    for tf_config in configs:
        started = time.monotonic()
        result = subprocess.run(mw.python_command(MAKE_STRATEGY.replace("=10", "=3")),
                                env=mw.worker_env(tf_config), capture_output=True,
                                text=True, timeout=90)
        seconds = time.monotonic() - started
        assert result.returncode != 0, result.stdout + result.stderr
        assert "built" not in result.stdout
        assert "not all 2 workers came up within 3" in result.stderr, result.stderr[-2000:]
        assert seconds < 40


@pytest.mark.slow
def test_a_port_already_in_use_is_named(tmp_path):
    """Through `mcnn-train`: one line naming this worker's address, no traceback."""
    ports = mw.free_ports(2)
    write_indexed_dataset(tmp_path, "train", 8, num_shards=2)
    data = tmp_path
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[0]))
        squatter.listen(1)
        result = subprocess.run(mw.train_command(data, tmp_path / "run"),
                                env=mw.worker_env(mw.tf_configs(ports)[0]),
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = re.findall(r"^error: .*", result.stderr, re.M)
    assert len(errors) == 1 and f"server at 127.0.0.1:{ports[0]}" in errors[0], result.stderr
    assert "port is in use" in errors[0] and "Traceback" not in result.stderr


# Each worker: its roles, whether make_strategy installed the Keras fix (it
# must not), multi-worker mode (ours and TensorFlow's private one), and what
# per_worker_dataset gives it.
TWO_WORKERS = r"""
import json
import tensorflow as tf
from mcnn_keras.train import distribute
from mcnn_keras.train import keras_multiworker_fix as f
s = distribute.make_strategy('multi_worker_mirrored', 'RING', 30)
installed_by_make_strategy = f.is_applied()
f.apply(s)
t = distribute.task_info(s)
print('INFO', json.dumps([t.worker_index, t.num_workers, t.is_chief,
                          s.num_replicas_in_sync, f.is_applied()]))
def make(worker, num_workers, batch):
    return tf.data.Dataset.from_tensors(
        tf.constant([[worker, num_workers, batch]], tf.int64)).repeat()
ds = distribute.per_worker_dataset(s, make, 3)
first = s.experimental_local_results(next(iter(ds)))[0].numpy()[0].tolist()
print('MODE', json.dumps([installed_by_make_strategy, distribute.in_multi_worker_mode(s),
                          s.extended._in_multi_worker_mode(),
                          isinstance(ds, tf.data.Dataset), first]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("chief", [False, True], ids=["workers", "chief_and_worker"])
def test_two_workers_build_strategy_and_agree_on_roles(chief):
    results = mw.run_workers(mw.python_command(TWO_WORKERS),
                             mw.tf_configs(mw.free_ports(2), chief=chief), timeout_s=120)
    assert all(r.returncode == 0 for r in results), mw.format_results(results)
    infos = [json.loads(r.stdout.split("INFO ")[1].splitlines()[0]) for r in results]
    assert infos == [[0, 2, True, 2, ["A", "B"]], [1, 2, False, 2, ["A", "B"]]]
    modes = [json.loads(r.stdout.split("MODE ")[1].splitlines()[0]) for r in results]
    # The fix is the caller's; multi-worker mode as TensorFlow has it; each
    # worker builds its own input (worker index, 2 workers, per-replica batch).
    assert modes == [[[], True, True, False, [i, 2, 3]] for i in range(2)]


def test_peer_failure_message():
    raw = tf.errors.UnavailableError(None, None, (
        "Graph execution error:\n\nDetected at node sgd/CollectiveReduceV2 defined at:\n"
        "  File \"x.py\", line 4, in <module>\n\n"
        "Collective ops is aborted by: Connection refused\nAdditional GRPC error ..."))
    error = distribute.peer_failure(raw)
    assert isinstance(error, tf.errors.UnavailableError)
    assert error.message.startswith("lost contact with another worker")
    assert error.message.endswith("Cause: Collective ops is aborted by: Connection refused")
    assert "\n" not in error.message


# --- writers ---------------------------------------------------------------------

def test_writer_dir_chief_vs_non_chief(tmp_path):
    model_dir = str(tmp_path / "run")
    chief, other = (cluster.TaskInfo("worker", i, i, 2, i == 0) for i in range(2))
    assert distribute.writer_dir(model_dir, chief) == model_dir
    scratch = distribute.writer_dir(model_dir, other)
    assert os.path.isdir(scratch) and not scratch.startswith(model_dir)
    open(os.path.join(scratch, "ckpt"), "w").close()
    distribute.cleanup_writer_dir(scratch, model_dir)
    assert not os.path.exists(scratch)
    os.makedirs(model_dir)
    distribute.cleanup_writer_dir(model_dir, model_dir)  # the chief's is kept
    assert os.path.isdir(model_dir)


COUNT_COLLECTIVE_THREADS = """
import os
import tensorflow as tf
from mcnn_keras.train import distribute
strategy = distribute.make_strategy("multi_worker_mirrored"{timeout})
with strategy.scope():
    v = tf.Variable(1.0)
step = tf.function(lambda: strategy.run(
    lambda: tf.distribute.get_replica_context().all_reduce("sum", v * 1.0)))
for _ in range(200):
    step()
names = []
for t in os.listdir("/proc/self/task"):
    try:
        names.append(open(f"/proc/self/task/{{t}}/comm").read().strip())
    except OSError:  # the thread ended meanwhile
        pass
print("collective threads", names.count("collective_ops"))
"""


# Measured on TensorFlow 2.21; 2.16 starts no such threads.
_PILES_UP = tuple(int(x) for x in tf.__version__.split(".")[:2]) >= (2, 21)


@pytest.mark.slow
@pytest.mark.parametrize("timeout, bounded", [
    ("", True),
    pytest.param(", collective_timeout_s=600", False, marks=pytest.mark.skipif(
        not _PILES_UP, reason="TensorFlow before 2.21 starts no thread per timeout"))])
def test_collectives_do_not_pile_up_threads_by_default(timeout, bounded):
    """With a collective timeout TensorFlow 2.21 keeps one sleeping thread per
    collective for that long (a 2-worker run at 128 x 128 died of it); by default
    there is none. The second case shows the mechanism the default avoids."""
    code = COUNT_COLLECTIVE_THREADS.format(timeout=timeout)
    results = mw.run_workers(mw.python_command(code), mw.tf_configs(mw.free_ports(2)),
                             timeout_s=120)
    assert all(r.returncode == 0 for r in results), mw.format_results(results)
    counts = [int(re.search(r"collective threads (\d+)", r.stdout).group(1)) for r in results]
    assert all(n < 20 for n in counts) == bounded, counts
    assert bounded or all(n >= 150 for n in counts), counts
