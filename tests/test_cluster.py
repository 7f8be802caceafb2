"""mcnn_keras.core.cluster: TF_CONFIG validation, Slurm, local ports; no TensorFlow."""

import json
import os
import socket
import subprocess
import sys

import pytest

from mcnn_keras.core import cluster
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


def test_import_does_not_import_tensorflow():
    code = ("import sys, mcnn_keras.core.cluster; assert 'tensorflow' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith('mcnn_keras'))")
    result = subprocess.run(mw.python_command(code), env=mw.worker_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_tf_config_one_line_error(name):
    text, words = BAD_CONFIGS[name]
    with pytest.raises(ValueError) as info:
        cluster.parse_tf_config(text)
    message = str(info.value)
    assert words in message
    assert "\n" not in message and message.startswith("TF_CONFIG")


def test_parse_tf_config_roles():
    assert cluster.parse_tf_config(_with(task__index=0)) == cluster.TaskInfo(
        "worker", 0, 0, 2, True)
    assert cluster.parse_tf_config(json.dumps(GOOD)) == cluster.TaskInfo(
        "worker", 1, 1, 2, False)
    with_chief = {"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:3"]},
                  "task": {"type": "worker", "index": 0}}
    # With a chief task the chief is worker 0 and trains too.
    assert cluster.parse_tf_config(json.dumps(with_chief)) == cluster.TaskInfo(
        "worker", 0, 1, 3, False)
    with_chief["task"] = {"type": "chief", "index": 0}
    assert cluster.parse_tf_config(json.dumps(with_chief)).is_chief
    evaluator = {"cluster": {"worker": ["h:1"], "evaluator": ["h:9"]},
                 "task": {"type": "evaluator", "index": 0}}
    assert cluster.parse_tf_config(json.dumps(evaluator)).worker_index == -1


def test_task_from_cluster():
    jobs = {"chief": ["h:1"], "worker": ["h:2", "h:3"], "evaluator": ["h:9"]}
    assert cluster.task_from_cluster(jobs, "chief", 0) == cluster.TaskInfo(
        "chief", 0, 0, 3, True)
    assert cluster.task_from_cluster(jobs, "worker", 1) == cluster.TaskInfo(
        "worker", 1, 2, 3, False)
    assert cluster.task_from_cluster(jobs, "evaluator", 0) == cluster.TaskInfo(
        "evaluator", 0, -1, 3, False)
    assert cluster.SINGLE_PROCESS == cluster.TaskInfo("worker", 0, 0, 1, True)


# --- Slurm -------------------------------------------------------------------

def test_expand_hostlist():
    assert cluster.expand_hostlist("node[01-03,7]") == ["node01", "node02", "node03",
                                                        "node7"]
    assert cluster.expand_hostlist("a,b[8-10],c") == ["a", "b8", "b9", "b10", "c"]
    assert cluster.expand_hostlist("r[1-2]-n[1-2]") == ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]
    with pytest.raises(ValueError, match="unbalanced"):
        cluster.expand_hostlist("node[1-2")


def test_expand_tasks_per_node():
    assert cluster.expand_tasks_per_node("2(x3),1", 4) == [2, 2, 2, 1]
    assert cluster.expand_tasks_per_node("4", 3) == [4, 4, 4]
    with pytest.raises(ValueError, match="does not match 2 nodes"):
        cluster.expand_tasks_per_node("2(x3)", 2)


SLURM_ENV = {"SLURM_JOB_NODELIST": "node[01-02,7]", "SLURM_NTASKS": "6",
             "SLURM_STEP_TASKS_PER_NODE": "2(x3)", "SLURM_PROCID": "3",
             "SLURMD_NODENAME": "node02"}


def test_slurm_tf_config_from_fake_environ():
    config = json.loads(cluster.slurm_tf_config(SLURM_ENV, base_port=9000))
    assert config["cluster"]["worker"] == [
        "node01:9000", "node01:9001", "node02:9000", "node02:9001", "node7:9000",
        "node7:9001"]
    assert config["task"] == {"type": "worker", "index": 3}
    task = cluster.parse_tf_config(json.dumps(config))  # valid for make_strategy
    assert (task.worker_index, task.num_workers, task.is_chief) == (3, 6, False)


def test_slurm_tf_config_one_task_per_node_without_counts():
    env = {"SLURM_JOB_NODELIST": "c[1-2]", "SLURM_NTASKS": "2", "SLURM_PROCID": "0"}
    config = json.loads(cluster.slurm_tf_config(env))
    assert config["cluster"]["worker"] == ["c1:8888", "c2:8888"]
    assert cluster.parse_tf_config(json.dumps(config)).is_chief


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
        cluster.slurm_tf_config(env)


def test_slurm_tf_config_matches_tensorflow_resolver():
    """Same cluster as TF's own SlurmClusterResolver for the same environment."""
    import tensorflow as tf  # the reference only: cluster itself never imports it
    env = {"SLURM_JOB_NODELIST": "n[1-2]", "SLURM_STEP_NODELIST": "n[1-2]",
           "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "2",
           "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_TASKS_PER_NODE": "2(x2)"}
    ours = json.loads(cluster.slurm_tf_config(env, base_port=8888))
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


# --- local ports (mcnn-launch) ---------------------------------------------------

def test_free_ports_distinct_and_bindable():
    ports = cluster.free_ports(3)
    assert len(set(ports)) == 3 and all(0 < port < 65536 for port in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", ports[0]))  # released again


def test_local_tf_configs_distinct_ports():
    configs = [json.loads(c) for c in cluster.local_tf_configs(3)]
    workers = configs[0]["cluster"]["worker"]
    assert len(set(workers)) == 3 and all(w.startswith("127.0.0.1:") for w in workers)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)


def test_local_tf_configs_given_ports_are_valid():
    configs = cluster.local_tf_configs(2, ports=[4000, 4001])
    assert json.loads(configs[1])["cluster"]["worker"] == ["127.0.0.1:4000", "127.0.0.1:4001"]
    tasks = [cluster.parse_tf_config(c) for c in configs]
    assert [(t.worker_index, t.num_workers, t.is_chief) for t in tasks] == [
        (0, 2, True), (1, 2, False)]
