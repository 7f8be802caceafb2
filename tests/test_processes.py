"""mcnn_keras.core.processes: real child processes, their groups, failures, output."""

import io
import os
import signal
import subprocess
import sys
import time

import pytest

from mcnn_keras.core.processes import WorkerGroup, exit_code
from mcnn_keras.core.repo import python_path

PY = sys.executable


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie not yet reaped by init counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_failing_worker_is_reported_and_the_others_stopped():
    out = io.StringIO()
    group = WorkerGroup([[PY, "-c", "import time; time.sleep(60)"],
                         [PY, "-c", "import sys; sys.exit(3)"],
                         [PY, "-c", "import time; time.sleep(60)"]],
                        stdout=out, stderr=out, grace_period_s=5)
    started = time.monotonic()
    result = group.run()
    assert time.monotonic() - started < 20
    assert result.failed.index == 1 and result.failed.code == 3
    assert result.code == 3
    for i in (0, 2):
        assert result.exits[i].signal == 15 and result.exits[i].code == 143


def test_stop_kills_a_wrappers_grandchild(tmp_path):
    pidfile = tmp_path / "grandchild"
    group = WorkerGroup([["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"]],
                        output="capture", grace_period_s=2)
    group.start()
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    assert _alive(grandchild)
    group.stop()
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_output_lines_carry_the_prefix():
    out, err = io.StringIO(), io.StringIO()
    result = WorkerGroup([[PY, "-c", "import sys; print('hello'); print('oops', file=sys.stderr)"],
                          [PY, "-c", "print('a'); print('b', end='')"]],
                         stdout=out, stderr=err).run()
    assert result.code == 0 and result.failed is None
    lines = out.getvalue().splitlines()
    assert sorted(lines) == ["[worker 0] hello", "[worker 1] a", "[worker 1] b"]
    assert err.getvalue() == "[worker 0] oops\n"


def test_capture_files_env_and_timeout(tmp_path):
    result = WorkerGroup([[PY, "-c", "import os; print(os.environ['X'])"]] * 2,
                         envs=[dict(os.environ, X=str(i)) for i in range(2)],
                         output="capture").run()
    assert [e.stdout for e in result.exits] == ["0\n", "1\n"]
    WorkerGroup([["echo", "hi"]], output="files", log_dir=str(tmp_path)).run()
    assert (tmp_path / "worker-0.log").read_text() == "hi\n"
    result = WorkerGroup([["sleep", "60"], ["true"]], output="capture").run(
        timeout_s=1, stop_on_failure=False)
    assert result.timed_out and result.exits[0].timed_out and not result.exits[1].timed_out
    assert result.exits[0].signal == 9


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="at least one"):
        WorkerGroup([])
    with pytest.raises(ValueError, match="2 environments for 1"):
        WorkerGroup([["true"]], envs=[{}, {}])
    with pytest.raises(ValueError, match="output must be"):
        WorkerGroup([["true"]], output="nope")
    with pytest.raises(ValueError, match="log_dir"):
        WorkerGroup([["true"]], output="files")
    assert exit_code(-9) == 137 and exit_code(4) == 4


# The parent runs a group of one wrapper (its grandchild ignores SIGTERM) and
# prints the grandchild's pid, then what `wait` returned once it got SIGTERM.
PARENT = r"""
import sys
from mcnn_keras.core.processes import WorkerGroup
pidfile = sys.argv[1]
group = WorkerGroup([["sh", "-c", "(trap '' TERM; sleep 300) & echo $! > " + pidfile + "; wait"]],
                    output="capture", grace_period_s=1)
result = group.run()
print("RESULT", result.received, result.code, flush=True)
"""


def test_sigterm_to_the_parent_is_forwarded_to_the_whole_group(tmp_path):
    pidfile = tmp_path / "grandchild"
    parent = subprocess.Popen([PY, "-c", PARENT, str(pidfile)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=python_path()))
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    time.sleep(0.3)  # the trap is set
    parent.send_signal(signal.SIGTERM)
    out, _ = parent.communicate(timeout=30)
    assert "RESULT 15 143" in out, out
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
