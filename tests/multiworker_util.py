"""Helpers for tests that run real worker processes on 127.0.0.1.

    ports = free_ports(2)
    configs = tf_configs(ports)               # one TF_CONFIG JSON per worker
    results = run_workers([sys.executable, "-c", CODE], configs, timeout_s=120)
    assert all(r.returncode == 0 for r in results), format_results(results)

`run_workers` starts all workers at once as a `core.processes.WorkerGroup`
(each with its own TF_CONFIG, quiet TensorFlow logs, the repo on PYTHONPATH
from `core.repo.python_path`), waits for them with a deadline,
kills whatever is still running at the deadline (marking it `timed_out`) and
returns every worker's exit code and output.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

from mcnn_keras.core.cluster import free_ports, local_tf_configs
from mcnn_keras.core.processes import WorkerExit, WorkerGroup, signal_group
from mcnn_keras.core.repo import REPO_ROOT as _REPO_ROOT, python_path

REPO_ROOT = pathlib.Path(_REPO_ROOT)


def tf_configs(ports, chief=False):
    """TF_CONFIG JSON texts for workers on `ports` (task i on ports[i]).

    With `chief=True` the first port is a 'chief' task and the rest workers.
    """
    configs = local_tf_configs(len(ports), ports=list(ports))
    if not chief:
        return configs
    addresses = json.loads(configs[0])["cluster"]["worker"]
    cluster = {"chief": addresses[:1], "worker": addresses[1:]}
    tasks = [("chief", 0)] + [("worker", i) for i in range(len(ports) - 1)]
    return [json.dumps({"cluster": cluster, "task": {"type": t, "index": i}})
            for t, i in tasks]


def worker_env(tf_config=None, extra=None):
    """The environment of a worker process: quiet TF, repo importable."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
                "PYTHONUNBUFFERED": "1", "PYTHONPATH": python_path(env)})
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    env.update(extra or {})
    return env


def start_worker(command, tf_config=None, extra_env=None, cwd=None):
    """Starts one worker process (own process group, output to pipes), for tests that
    start workers one by one; `run_workers` starts a whole `WorkerGroup`."""
    return subprocess.Popen(command, env=worker_env(tf_config, extra_env), cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_workers(procs, timeout_s, started=None):
    """Waits for `start_worker` processes; kills the groups still running after
    `timeout_s`. Returns `processes.WorkerExit`s."""
    started = started or time.monotonic()
    deadline = started + timeout_s
    results = []
    for index, proc in enumerate(procs):
        timed_out = False
        try:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            signal_group(proc.pid)
            out, err = proc.communicate()
        results.append(WorkerExit(index, proc.pid, proc.returncode,
                                  time.monotonic() - started, out, err, timed_out))
    return results


def run_workers(command, tf_config_list, timeout_s=180, extra_env=None, cwd=None):
    """Runs one `command` per TF_CONFIG concurrently; returns `processes.WorkerExit`s.

    `command` is a list, or a function of the worker index returning a list;
    `extra_env` a dict, or a function of the worker index returning a dict.
    Every worker runs to its end (no stop on failure) or to the deadline.
    """
    n = len(tf_config_list)
    commands = [command(i) if callable(command) else command for i in range(n)]
    envs = [worker_env(tf_config, extra_env(i) if callable(extra_env) else extra_env)
            for i, tf_config in enumerate(tf_config_list)]
    group = WorkerGroup(commands, envs=envs, cwd=cwd, output="capture")
    return group.run(timeout_s=timeout_s, stop_on_failure=False).exits


def format_results(results, tail=3000):
    """The exit codes and output tails of all workers, for assertion messages."""
    return "\n".join(
        f"--- worker {r.index}: exit {r.returncode}{' (TIMED OUT)' if r.timed_out else ''}"
        f" after {r.seconds:.1f}s\nstdout: ...{r.stdout[-tail:]}\nstderr: ...{r.stderr[-tail:]}"
        for r in results)


def python_command(code):
    """A command running `code` in a fresh interpreter of this venv."""
    return [sys.executable, "-c", code]


# --- Training jobs of the real `mcnn-train` binary ---------------------------

SIZE = 128  # image side of the multi-worker tests' data
TIMEOUT_S = 30  # --collective_timeout_s of every multi-worker run
TRAIN_MODULE = [sys.executable, "-m", "mcnn_keras.cli.train"]
# The same binary, every worker also saving its final weights (--final_weights_npz).
TRAIN_SAVING_WEIGHTS = [sys.executable, str(REPO_ROOT / "tests" / "train_saving_weights.py")]


def write_data(directory, num_train=48, num_val=16, num_shards=4, num_val_shards=2, seed=3):
    """Synthetic SIZE x SIZE shards (train-* and val-*) in `directory`."""
    from mcnn_keras.data.synthetic import generator as synthetic  # pylint: disable=import-outside-toplevel
    synthetic.write_synthetic_dataset(str(directory), SIZE, SIZE, num_train=num_train,
                                      num_val=num_val, num_shards=num_shards,
                                      num_val_shards=num_val_shards, seed=seed, progress=False)
    return directory


def train_command(data_dir, model_dir, program=TRAIN_MODULE, **flags):
    """A multi-worker `mcnn-train` command line; `flags` override the defaults."""
    values = {"train_files": f"{data_dir}/train-*.tfrecord", "val_files": "",
              "model_dir": model_dir, "height": SIZE, "width": SIZE, "batch_size": 4,
              "epochs": 2, "verbose": 2, "tensorboard": False,
              "strategy": "multi_worker_mirrored", "collective_timeout_s": TIMEOUT_S,
              "seed": 7}
    values.update(flags)
    return list(program) + [f"--{'' if value else 'no'}{name}" if isinstance(value, bool)
                            else f"--{name}={value}" for name, value in values.items()]


def tmpdir_env(tmp_path, tag):
    """Per-worker TMPDIR (where non-chief scratch dirs go), so a test can inspect it."""
    def env(index):
        directory = tmp_path / f"tmp-{tag}-{index}"
        directory.mkdir(exist_ok=True)
        return {"TMPDIR": str(directory)}
    return env


def run_training(command, num_workers, tmp_path, tag, timeout_s=300):
    """Runs `command` as `num_workers` workers (1: a single process) to success."""
    if num_workers == 1:
        command = [c for c in command if not c.startswith("--strategy=")] + [
            "--strategy=default"]
        configs = [None]
    else:
        configs = tf_configs(free_ports(num_workers))
    results = run_workers(command, configs, timeout_s=timeout_s,
                          extra_env=tmpdir_env(tmp_path, tag))
    assert all(r.returncode == 0 for r in results), format_results(results)
    return results


def kill_at_checkpoint(command, env, checkpoint_index, victim, timeout_s=240):
    """Starts 2 workers, SIGKILLs `victim` once `checkpoint_index` exists.

    Returns both workers' results (the survivor's counted from the kill).
    """
    configs = tf_configs(free_ports(2))
    procs = [start_worker(command, configs[i], env(i)) for i in range(2)]
    try:
        deadline = time.monotonic() + timeout_s
        while not checkpoint_index.exists() and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), format_results(
                wait_workers(procs, 10))
            time.sleep(0.05)
        assert checkpoint_index.exists(), f"no checkpoint {checkpoint_index}"
        signal_group(procs[victim].pid)
        return wait_workers(procs, 90)
    finally:
        for proc in procs:
            if proc.poll() is None:
                signal_group(proc.pid)
