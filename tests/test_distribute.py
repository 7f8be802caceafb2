"""mcnn_keras.distribute: TF_CONFIG validation, strategies, Slurm, writer dirs."""

import json
import os
import subprocess
import sys
import time

import pytest

from mcnn_keras import distribute
import multiworker_util as mw

GOOD = {"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
        "task": {"type": "worker", "index": 1}}


def _with(**changes):
    config = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        target = config
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return json.dumps(config)


_DELETE = object()

# (TF_CONFIG text, the words its one-line error must contain)
BAD_CONFIGS = {
    "malformed_json": ('{"cluster": {"worker": ["a:1"]}, "task": ', "not valid JSON"),
    "not_an_object": ("[1, 2]", "must be a JSON object"),
    "missing_cluster": (_with(cluster=_DELETE), "no 'cluster' object"),
    "missing_task": (_with(task=_DELETE), "no 'task' object"),
    "index_out_of_range": (_with(task__index=2), "task.index 2 is out of range"),
    "negative_index": (_with(task__index=-1), "task.index -1 is out of range"),
    "index_not_int": (_with(task__index="1"), "task.index must be an integer"),
    "no_port": (_with(cluster__worker=["127.0.0.1:2222", "host2"]),
                "address 'host2' has no valid port"),
    "bad_port": (_with(cluster__worker=["127.0.0.1:22x", "h:1"]),
                 "address '127.0.0.1:22x' has no valid port"),
    "unknown_task_type": (_with(task__type="master"), "task.type 'master' is not a job"),
    "unknown_job": (_with(cluster__trainer=["h:1"]), "unknown job 'trainer'"),
    "empty_worker_list": (_with(cluster__worker=[]), "must be a non-empty list"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_tf_config_one_line_error(name):
    text, words = BAD_CONFIGS[name]
    with pytest.raises(ValueError) as info:
        distribute.parse_tf_config(text)
    message = str(info.value)
    assert words in message
    assert "\n" not in message and message.startswith("TF_CONFIG")


def test_parse_tf_config_roles():
    assert distribute.parse_tf_config(_with(task__index=0)) == distribute.TaskInfo(
        "worker", 0, 0, 2, True)
    assert distribute.parse_tf_config(json.dumps(GOOD)) == distribute.TaskInfo(
        "worker", 1, 1, 2, False)
    with_chief = {"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:3"]},
                  "task": {"type": "worker", "index": 0}}
    # With a chief task the chief is worker 0 and trains too.
    assert distribute.parse_tf_config(json.dumps(with_chief)) == distribute.TaskInfo(
        "worker", 0, 1, 3, False)
    with_chief["task"] = {"type": "chief", "index": 0}
    assert distribute.parse_tf_config(json.dumps(with_chief)).is_chief
    evaluator = {"cluster": {"worker": ["h:1"], "evaluator": ["h:9"]},
                 "task": {"type": "evaluator", "index": 0}}
    assert distribute.parse_tf_config(json.dumps(evaluator)).worker_index == -1


def test_make_strategy_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        distribute.make_strategy("tpu")
    with pytest.raises(ValueError, match="unknown collective implementation 'NCCL'"):
        distribute.make_strategy("multi_worker_mirrored", "NCCL")


def test_single_process_strategies():
    import tensorflow as tf
    for name in ("default", "one_device", "mirrored"):
        strategy = distribute.make_strategy(name)
        assert strategy.num_replicas_in_sync == 1
        assert distribute.task_info(strategy) == distribute.SINGLE_PROCESS
    assert isinstance(distribute.make_strategy("one_device"), tf.distribute.OneDeviceStrategy)


MAKE_STRATEGY = ("from mcnn_keras import distribute; "
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
def test_two_workers_build_strategy_and_agree_on_roles():
    code = ("import json; from mcnn_keras import distribute, keras_multiworker_fix as f; "
            "s = distribute.make_strategy('multi_worker_mirrored', 'RING', 30); "
            "t = distribute.task_info(s); "
            "print('INFO', json.dumps([t.worker_index, t.num_workers, t.is_chief, "
            "s.num_replicas_in_sync, f.is_applied()]))")
    results = mw.run_workers(mw.python_command(code), mw.tf_configs(mw.free_ports(2)),
                             timeout_s=120)
    assert all(r.returncode == 0 for r in results), mw.format_results(results)
    infos = [json.loads(r.stdout.split("INFO ")[1]) for r in results]
    assert infos == [[0, 2, True, 2, ["A", "B"]], [1, 2, False, 2, ["A", "B"]]]


# --- Slurm -------------------------------------------------------------------

def test_expand_hostlist():
    assert distribute.expand_hostlist("node[01-03,7]") == ["node01", "node02", "node03",
                                                           "node7"]
    assert distribute.expand_hostlist("a,b[8-10],c") == ["a", "b8", "b9", "b10", "c"]
    assert distribute.expand_hostlist("r[1-2]-n[1-2]") == ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]
    with pytest.raises(ValueError, match="unbalanced"):
        distribute.expand_hostlist("node[1-2")


def test_expand_tasks_per_node():
    assert distribute.expand_tasks_per_node("2(x3),1", 4) == [2, 2, 2, 1]
    assert distribute.expand_tasks_per_node("4", 3) == [4, 4, 4]
    with pytest.raises(ValueError, match="does not match 2 nodes"):
        distribute.expand_tasks_per_node("2(x3)", 2)


SLURM_ENV = {"SLURM_JOB_NODELIST": "node[01-02,7]", "SLURM_NTASKS": "6",
             "SLURM_STEP_TASKS_PER_NODE": "2(x3)", "SLURM_PROCID": "3",
             "SLURMD_NODENAME": "node02"}


def test_slurm_tf_config_from_fake_environ():
    config = json.loads(distribute.slurm_tf_config(SLURM_ENV, base_port=9000))
    assert config["cluster"]["worker"] == [
        "node01:9000", "node01:9001", "node02:9000", "node02:9001", "node7:9000",
        "node7:9001"]
    assert config["task"] == {"type": "worker", "index": 3}
    task = distribute.parse_tf_config(json.dumps(config))  # valid for make_strategy
    assert (task.worker_index, task.num_workers, task.is_chief) == (3, 6, False)


def test_slurm_tf_config_one_task_per_node_without_counts():
    env = {"SLURM_JOB_NODELIST": "c[1-2]", "SLURM_NTASKS": "2", "SLURM_PROCID": "0"}
    config = json.loads(distribute.slurm_tf_config(env))
    assert config["cluster"]["worker"] == ["c1:8888", "c2:8888"]
    assert distribute.parse_tf_config(json.dumps(config)).is_chief


@pytest.mark.parametrize("change, words", [
    ({"SLURM_PROCID": None}, "SLURM_PROCID is not set"),
    ({"SLURM_NTASKS": "5"}, "SLURM_NTASKS=5 but"),
    ({"SLURM_PROCID": "6"}, "SLURM_PROCID=6 is out of range"),
    ({"SLURMD_NODENAME": "node01"}, "use srun --distribution=block"),
])
def test_slurm_tf_config_errors(change, words):
    env = dict(SLURM_ENV, **change)
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        distribute.slurm_tf_config(env)


def test_slurm_tf_config_matches_tensorflow_resolver():
    """Same cluster as TF's own SlurmClusterResolver for the same environment."""
    import tensorflow as tf
    env = {"SLURM_JOB_NODELIST": "n[1-2]", "SLURM_STEP_NODELIST": "n[1-2]",
           "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "2",
           "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_TASKS_PER_NODE": "2(x2)"}
    ours = json.loads(distribute.slurm_tf_config(env, base_port=8888))
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=8888, gpus_per_node=2, gpus_per_task=1)  # 0 GPUs crashes it
        theirs = resolver.cluster_spec().as_dict()
        assert (resolver.task_type, resolver.task_id) == ("worker", 2)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert sorted(theirs["worker"]) == sorted(ours["cluster"]["worker"])


def test_print_slurm_tf_config_cli():
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.launch", "--print_slurm_tf_config",
         "--base_port=7000"], env=mw.worker_env(extra=SLURM_ENV), capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cluster"]["worker"][0] == "node01:7000"


def test_peer_failure_message():
    import tensorflow as tf
    raw = tf.errors.UnavailableError(None, None, (
        "Graph execution error:\n\nDetected at node sgd/CollectiveReduceV2 defined at:\n"
        "  File \"x.py\", line 4, in <module>\n\n"
        "Collective ops is aborted by: Connection refused\nAdditional GRPC error ..."))
    error = distribute.peer_failure(raw)
    assert isinstance(error, tf.errors.UnavailableError)
    assert error.message.startswith("lost contact with another worker")
    assert error.message.endswith("Cause: Collective ops is aborted by: Connection refused")
    assert "\n" not in error.message


# --- writers and shards ----------------------------------------------------------

def test_writer_dir_chief_vs_non_chief(tmp_path):
    model_dir = str(tmp_path / "run")
    chief, other = (distribute.TaskInfo("worker", i, i, 2, i == 0) for i in range(2))
    assert distribute.writer_dir(model_dir, chief) == model_dir
    scratch = distribute.writer_dir(model_dir, other)
    assert os.path.isdir(scratch) and not scratch.startswith(model_dir)
    open(os.path.join(scratch, "ckpt"), "w").close()
    distribute.cleanup_writer_dir(scratch, model_dir)
    assert not os.path.exists(scratch)
    os.makedirs(model_dir)
    distribute.cleanup_writer_dir(model_dir, model_dir)  # the chief's is kept
    assert os.path.isdir(model_dir)


def test_shard_files_for_worker():
    files = [f"f{i}" for i in range(5)]
    shards = [distribute.shard_files_for_worker(files, distribute.TaskInfo(
        "worker", i, i, 2, i == 0)) for i in range(2)]
    assert shards == [["f0", "f2", "f4"], ["f1", "f3"]]
    with pytest.raises(ValueError, match="2 TFRecord files for 3 workers"):
        distribute.shard_files_for_worker(files[:2], distribute.TaskInfo("worker", 0, 0, 3))
