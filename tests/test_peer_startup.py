"""Workers that start late are waited for, loudly; one that never starts is named.

Real `mcnn-train` workers on 127.0.0.1. Clusters start workers minutes apart:
worker 0 must wait, say whom it waits for (task and address) while it does,
and after --startup_timeout fail with one line naming the missing worker,
leaving the model_dir of an earlier run untouched.
"""

import re
import subprocess
import threading
import time

import pytest

import multiworker_util as mw

STARTUP_TIMEOUT = 40
LATE_S = 20
WAITING = re.compile(r"waiting for worker 1 at 127\.0\.0\.1:(\d+) \((\d+)s")


def _command(data, model_dir, **flags):
    return mw.train_command(data, model_dir, startup_timeout=STARTUP_TIMEOUT,
                            steps_per_epoch=2, **flags)


@pytest.fixture(scope="module")
def late_run(tmp_path_factory):
    """Two workers, worker 1 started LATE_S seconds after worker 0."""
    root = tmp_path_factory.mktemp("late")
    data = mw.write_data(root / "data")
    ports = mw.free_ports(2)
    configs = mw.tf_configs(ports)
    command = _command(data, root / "run", epochs=1)
    procs = [mw.start_worker(command, configs[0])]
    try:
        time.sleep(LATE_S)
        procs.append(mw.start_worker(command, configs[1]))
        results = mw.wait_workers(procs, 150)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return root / "run", ports, data, results


@pytest.mark.slow
def test_a_late_worker_is_waited_for_and_reported(late_run):
    model_dir, ports, _, results = late_run
    assert all(r.returncode == 0 for r in results), mw.format_results(results)
    waiting = WAITING.findall(results[0].stderr)
    assert waiting and waiting[0][0] == str(ports[1]), results[0].stderr[-3000:]
    assert (model_dir / "summary.json").exists()


def _snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_worker_that_never_starts_is_named_and_nothing_is_lost(late_run):
    """Only worker 0 of 2, resuming the finished run for one more epoch."""
    model_dir, _, data, _ = late_run
    before = _snapshot(model_dir)
    assert any(name.startswith("checkpoints/") for name in before)
    ports = mw.free_ports(2)
    started = time.monotonic()
    proc = mw.start_worker(_command(data, model_dir, epochs=2), mw.tf_configs(ports)[0])
    lines = []  # (seconds since start, stderr line), as they arrive

    def read():
        for line in proc.stderr:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
    reader.join(10)
    seconds = time.monotonic() - started
    stderr = "\n".join(line for _, line in lines)

    first_wait = next((t for t, line in lines if WAITING.search(line)), None)
    assert first_wait is not None and first_wait < 35, stderr[-3000:]
    assert WAITING.search(stderr).group(1) == str(ports[1])
    assert proc.returncode == 1 and seconds < 60, (proc.returncode, seconds, stderr[-3000:])
    errors = [line for _, line in lines if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert f"worker 1 at 127.0.0.1:{ports[1]}" in errors[0]
    assert f"within {STARTUP_TIMEOUT} s" in errors[0]
    assert "Traceback" not in stderr
    assert _snapshot(model_dir) == before  # the earlier run's files, byte for byte
