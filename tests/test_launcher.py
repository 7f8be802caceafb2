"""mcnn_keras.train.launcher / mcnn-launch: local workers, pinning, failure handling.

Their TF_CONFIGs and ports (`cluster.local_tf_configs`) are tested in test_cluster.py.
"""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from mcnn_keras.train import launcher
import multiworker_util as mw

# A worker that reports what the launcher gave it.
REPORT = r"""
import json, os
from mcnn_keras.train import launcher
intra, inter = launcher.configure_threads_from_env()
import tensorflow as tf
tf.constant(1.0) + 1.0
print("REPORT " + json.dumps({
    "tf_config": json.loads(os.environ["TF_CONFIG"]),
    "affinity": sorted(os.sched_getaffinity(0)),
    "env_intra": os.environ.get("TF_NUM_INTRAOP_THREADS"),
    "intra": tf.config.threading.get_intra_op_parallelism_threads(),
    "inter": tf.config.threading.get_inter_op_parallelism_threads()}))
"""

# Worker 1 fails at once; worker 0 waits (and says when it is told to stop).
FAIL_ONE = r"""
import json, os, signal, sys, time
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
if index == 1:
    print("worker 1 failing", flush=True)
    sys.exit(3)
def on_term(*_):
    print("worker 0 got SIGTERM", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
print("worker 0 ready", flush=True)
time.sleep(60)
"""

IGNORE_TERM = r"""
import json, os, signal, sys, time
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
if index == 1:
    time.sleep(0.5)
    sys.exit(2)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(60)
"""


def _launch(code, num_workers=2, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    env = mw.worker_env()
    started = time.monotonic()
    result = launcher.launch_local([sys.executable, "-c", code], num_workers,
                                   extra_env={"PYTHONPATH": env["PYTHONPATH"],
                                              "TF_CPP_MIN_LOG_LEVEL": "2"},
                                   stdout=out, stderr=err, **kwargs)
    return result, out.getvalue(), err.getvalue(), time.monotonic() - started


def test_core_assignment():
    assert launcher.core_assignment(2, available={0, 1}) == [[0], [1]]
    assert launcher.core_assignment(2, 2, available=range(8)) == [[0, 1], [2, 3]]
    assert launcher.core_assignment(2, available=[4, 5, 6, 7]) == [[4, 5], [6, 7]]
    with pytest.raises(ValueError, match="cannot pin 3 workers x 1 cores on the 2"):
        launcher.core_assignment(3, 1, available={0, 1})


def test_thread_env():
    assert launcher.thread_env(1) == {"TF_NUM_INTRAOP_THREADS": "1",
                                      "TF_NUM_INTEROP_THREADS": "1"}
    assert launcher.thread_env(4)["TF_NUM_INTEROP_THREADS"] == "2"


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_two_pinned_workers_one_thread_each():
    code, out, err, _ = _launch(REPORT, pin_cores=True, threads_per_worker=1)
    assert code == 0, out + err
    reports = {}
    for line in out.splitlines():
        match = re.match(r"\[worker (\d)\] REPORT (.*)", line)
        if match:
            reports[int(match.group(1))] = json.loads(match.group(2))
    assert sorted(reports) == [0, 1], out
    cores = sorted(os.sched_getaffinity(0))
    for i, report in reports.items():
        assert report["tf_config"]["task"]["index"] == i  # prefix is the right worker
        assert report["affinity"] == [cores[i]]
        assert report["env_intra"] == "1"
        assert report["intra"] == 1 and report["inter"] == 1
    assert "[launcher] worker 1: pid" in err


@pytest.mark.slow
def test_failing_worker_stops_the_other_and_exit_code_propagates():
    code, out, err, seconds = _launch(FAIL_ONE, grace_period_s=5)
    assert code == 3, out + err
    assert "[worker 1] worker 1 failing" in out
    assert "[worker 0] worker 0 got SIGTERM" in out
    assert "worker 1 exited with code 3; stopping the others" in err
    assert seconds < 20


@pytest.mark.slow
def test_worker_ignoring_sigterm_is_killed_after_grace_period():
    code, out, err, seconds = _launch(IGNORE_TERM, grace_period_s=1)
    assert code == 2, out + err
    assert seconds < 15


@pytest.mark.slow
def test_cli_forwards_sigterm_and_fails(tmp_path):
    env = mw.worker_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcnn_keras.cli.launch", "--num_workers=2", "--",
         sys.executable, "-c", FAIL_ONE.replace("index == 1", "index == 7")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    seen = ""
    # Both workers print "worker 0 ready" (neither is index 7), in either order.
    while "[worker 0] worker 0 ready" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    assert "[worker 0] worker 0 ready" in seen
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "[worker 0] worker 0 got SIGTERM" in out, out + err


def test_cli_without_command_fails_with_one_line():
    result = subprocess.run([sys.executable, "-m", "mcnn_keras.cli.launch", "--num_workers=2"],
                            env=mw.worker_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: no worker command given (put it after --)"


# --- NUMA: cores from one node per worker, memory bound there ----------------------

def _fake_nodes(root, cpulists):
    """A sysfs-like node directory: node<i>/cpulist, plus entries that are no node."""
    for i, cpulist in enumerate(cpulists):
        (root / f"node{i}").mkdir(parents=True)
        (root / f"node{i}" / "cpulist").write_text(cpulist + "\n")
    (root / "power").mkdir()
    (root / "online").write_text("0-%d\n" % (len(cpulists) - 1))
    return str(root)


def test_numa_nodes_are_read_from_sysfs(tmp_path):
    assert launcher.parse_cpulist("0-3,8-9,12") == [0, 1, 2, 3, 8, 9, 12]
    root = _fake_nodes(tmp_path / "node", ["0-1", "2-3"])
    assert launcher.numa_nodes(root) == {0: [0, 1], 1: [2, 3]}
    assert launcher.numa_nodes(str(tmp_path / "missing")) == {}


def test_numa_assignment_gives_each_worker_one_node():
    nodes = {0: [0, 1], 1: [2, 3]}
    assert launcher.numa_assignment(2, available=range(4), nodes=nodes) == [
        launcher.Placement([0, 1], 0), launcher.Placement([2, 3], 1)]
    assert launcher.numa_assignment(4, available=range(4), nodes=nodes) == [
        launcher.Placement([0], 0), launcher.Placement([1], 0),
        launcher.Placement([2], 1), launcher.Placement([3], 1)]
    # Only node 1's cores allowed: both workers there.
    assert launcher.numa_assignment(2, available={2, 3}, nodes=nodes) == [
        launcher.Placement([2], 1), launcher.Placement([3], 1)]
    with pytest.raises(ValueError, match="cannot pin 2 workers x 3 cores"):
        launcher.numa_assignment(2, 3, available=range(4), nodes=nodes)


def test_plan_uses_numa_nodes_only_when_there_are_several(tmp_path):
    two = _fake_nodes(tmp_path / "two", ["0-1", "2-3"])
    one = _fake_nodes(tmp_path / "one", ["0-3"])
    plan = launcher.plan_workers(2, pin_cores=True, numa_root=two, available=range(4))
    assert [(p.node, p.cores) for p in plan] == [(0, [0, 1]), (1, [2, 3])]
    for root, numa in ((one, "auto"), (two, "off")):
        plan = launcher.plan_workers(2, pin_cores=True, numa=numa, numa_root=root,
                                     available=range(4))
        assert [(p.node, p.cores) for p in plan] == [(None, [0, 1]), (None, [2, 3])]
    assert launcher.plan_workers(2, numa_root=two) == [launcher.Placement()] * 2


def test_worker_command_is_prefixed_with_numactl_when_bound():
    placement = launcher.Placement([2, 3], 1)
    assert launcher.worker_command(["mcnn-train", "--x"], placement, "/usr/bin/numactl") == [
        "/usr/bin/numactl", "--membind=1", "--physcpubind=2,3", "mcnn-train", "--x"]
    assert launcher.worker_command(["mcnn-train"], placement, None) == ["mcnn-train"]
    assert launcher.worker_command(["mcnn-train"], launcher.Placement([0]), "numactl") == [
        "mcnn-train"]


# Stands in for numactl: says how it was called, then runs the command.
FAKE_NUMACTL = r"""#!{python}
import os, sys
options = [a for a in sys.argv[1:] if a.startswith("--")]
command = sys.argv[1 + len(options):]
print("NUMACTL " + " ".join(options), flush=True)
os.execvp(command[0], command)
"""

AFFINITY = "import os; print('AFFINITY', sorted(os.sched_getaffinity(0)))"


def _launch_on_fake_nodes(tmp_path, which):
    cores = sorted(os.sched_getaffinity(0))[:2]
    root = _fake_nodes(tmp_path / "node", [str(c) for c in cores])
    out, err = io.StringIO(), io.StringIO()
    code = launcher.launch_local([sys.executable, "-c", AFFINITY], 2, pin_cores=True,
                                 numa_root=root, which=which, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue(), cores


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_launch_binds_each_worker_to_its_node_with_numactl(tmp_path):
    numactl = tmp_path / "numactl"
    numactl.write_text(FAKE_NUMACTL.format(python=sys.executable))
    numactl.chmod(0o755)
    code, out, err, cores = _launch_on_fake_nodes(
        tmp_path, lambda name: str(numactl) if name == "numactl" else None)
    assert code == 0, out + err
    for i, core in enumerate(cores):
        assert (f"[launcher] plan: worker {i} -> NUMA node {i}, cores [{core}], memory bound "
                f"by numactl") in err
        assert f"[worker {i}] NUMACTL --membind={i} --physcpubind={core}" in out
        assert f"[worker {i}] AFFINITY [{core}]" in out
    assert "warning" not in err


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_launch_without_numactl_warns_once_and_still_pins(tmp_path):
    code, out, err, cores = _launch_on_fake_nodes(tmp_path, lambda name: None)
    assert code == 0, out + err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == ["[launcher] warning: numactl not found: workers are pinned to their "
                        "node's cores but their memory is not bound to it (install numactl, "
                        "or --numa=off)"]
    assert "memory NOT bound" in err and "NUMACTL" not in out
    for i, core in enumerate(cores):
        assert f"[worker {i}] AFFINITY [{core}]" in out


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_launch_with_a_numactl_that_cannot_bind_warns_and_runs_unbound(tmp_path):
    numactl = tmp_path / "numactl"  # as in a container whose seccomp forbids set_mempolicy
    numactl.write_text("#!/bin/sh\necho 'set_mempolicy: Operation not permitted' >&2\nexit 1\n")
    numactl.chmod(0o755)
    code, out, err, cores = _launch_on_fake_nodes(tmp_path, lambda name: str(numactl))
    assert code == 0, out + err
    assert "[launcher] warning: numactl cannot bind memory here (set_mempolicy: Operation not " \
        "permitted): workers are pinned" in err
    for i, core in enumerate(cores):
        assert f"[worker {i}] AFFINITY [{core}]" in out
