"""mcnn_keras.launcher / mcnn-launch: local workers, pinning, failure handling.

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

from mcnn_keras import launcher
import multiworker_util as mw

# A worker that reports what the launcher gave it.
REPORT = r"""
import json, os
from mcnn_keras import launcher
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
