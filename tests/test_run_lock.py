"""One training run per directory: the lock's holder, its death, its release."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from mcnn_keras.train import run_lock
from mcnn_keras.train.run_dir import RunDir

HOLD = """
import sys, time
from mcnn_keras.train import run_lock
from mcnn_keras.train.run_dir import RunDir
with run_lock.hold(RunDir(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(300)
"""


def hold_lock(path):
    """A real process holding `path`'s lock; returns it once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_held_lock_refuses_with_its_holder_and_a_dead_ones_is_taken(tmp_path, caplog):
    run = RunDir(str(tmp_path / "run"))
    holder = hold_lock(run.path)
    try:
        with pytest.raises(ValueError, match=rf"locked by pid {holder.pid} on host "
                                             rf"{socket.gethostname()} since "):
            with run_lock.hold(run):
                pass
        assert json.loads(open(run.lock_file).read())["pid"] == holder.pid  # untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert os.path.exists(run.lock_file)  # kill -9 left it: stale
    with caplog.at_level(logging.INFO, logger="mcnn_keras"):
        with run_lock.hold(run):
            assert json.loads(open(run.lock_file).read())["pid"] == os.getpid()
    assert f"previous holder pid {holder.pid} on host {socket.gethostname()}" in caplog.text
    assert "is gone" in caplog.text
    assert not os.path.exists(run.lock_file)  # released: removed


def test_the_lock_is_released_on_errors_and_a_clean_lock_file_is_not_stale(tmp_path, caplog):
    run = RunDir(str(tmp_path / "run"))
    with pytest.raises(RuntimeError):
        with run_lock.hold(run):
            raise RuntimeError("boom")
    assert not os.path.exists(run.path)  # the lock file, and the empty dir it made
    with caplog.at_level(logging.INFO, logger="mcnn_keras"):
        with run_lock.hold(run):
            pass
    assert "previous holder" not in caplog.text


def test_the_lock_admits_one_holder_at_a_time(tmp_path):
    """Many takers racing with releases (which remove the file) never overlap."""
    run = RunDir(str(tmp_path / "run"))
    inside, overlaps, taken = [0], [], [0]
    guard = threading.Lock()

    deadline = time.time() + 60

    def taker():
        while taken[0] < 100 and time.time() < deadline:
            try:
                with run_lock.hold(run):
                    with guard:
                        inside[0] += 1
                        overlaps.append(inside[0] > 1)
                        taken[0] += 1
                    time.sleep(0.0005)
                    with guard:
                        inside[0] -= 1
            except ValueError:
                pass

    threads = [threading.Thread(target=taker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert taken[0] >= 100 and not any(overlaps)


def test_object_storage_cannot_be_locked_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="mcnn_keras"):
        with run_lock.hold(RunDir("gs://bucket/run")):
            pass
    assert "no locks" in caplog.text
