"""The guards of a run directory: its lock, resume checks, flags.json, output dirs."""

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

from mcnn_keras.train import config
from mcnn_keras.train import run_dir
from mcnn_keras.train.run_dir import RunDir, make_output_dir

HOLD = """
import sys, time
from mcnn_keras.train.run_dir import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(300)
"""


def hold_lock(path):
    """A real process holding `path`'s lock; returns it once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def base_config(model_dir, **overrides):
    return config.TrainConfig.from_flat({"model_dir": str(model_dir), "height": 128,
                                         "width": 128, **overrides})


def test_a_held_lock_refuses_with_its_holder_and_a_dead_ones_is_taken(tmp_path, caplog):
    run = RunDir(str(tmp_path / "run"))
    holder = hold_lock(run.path)
    try:
        with pytest.raises(ValueError, match=rf"locked by pid {holder.pid} on host "
                                             rf"{socket.gethostname()} since "):
            with run.lock():
                pass
        assert json.loads(open(run.lock_file).read())["pid"] == holder.pid  # untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert os.path.exists(run.lock_file)  # kill -9 left it: stale
    with caplog.at_level(logging.INFO, logger="mcnn_keras"):
        with run.lock():
            assert json.loads(open(run.lock_file).read())["pid"] == os.getpid()
    assert f"previous holder pid {holder.pid} on host {socket.gethostname()}" in caplog.text
    assert "is gone" in caplog.text
    assert not os.path.exists(run.lock_file)  # released: removed


def test_the_lock_is_released_on_errors_and_a_clean_lock_file_is_not_stale(tmp_path, caplog):
    run = RunDir(str(tmp_path / "run"))
    with pytest.raises(RuntimeError):
        with run.lock():
            raise RuntimeError("boom")
    assert not os.path.exists(run.path)  # the lock file, and the empty dir it made
    with caplog.at_level(logging.INFO, logger="mcnn_keras"):
        with run.lock():
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
                with run.lock():
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
        with RunDir("gs://bucket/run").lock():
            pass
    assert "no locks" in caplog.text


def test_output_dirs_that_are_files_or_read_only_name_the_flag(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(ValueError, match=rf"--output_dir={afile}: exists and is not a dir"):
        make_output_dir(str(afile), "output_dir")
    with pytest.raises(ValueError, match="--model_dir=.*afile/sub: cannot create it"):
        make_output_dir(str(afile / "sub"), "model_dir")
    assert afile.read_text() == "mine"
    if os.path.isdir("/proc/1"):  # exists, but nobody (root included) may create files there
        with pytest.raises(ValueError, match="--model_dir=/proc/1: cannot write there"):
            make_output_dir("/proc/1", "model_dir")
    nested = tmp_path / "a" / "b"
    assert make_output_dir(str(nested), "output_dir") == str(nested)
    assert nested.is_dir() and not os.listdir(nested)  # the write test left nothing


def test_resume_allows_only_the_resumable_changes(tmp_path):
    assert set(config.RESUMABLE_CHANGES) <= {f.name for _, f in config.fields()}
    run = RunDir(str(tmp_path))
    cfg = base_config(tmp_path)
    assert run.check_resume(cfg) == {}  # no run yet
    run.write_config(cfg, {"global_batch": 8})
    assert run.check_resume(cfg) == {}
    assert run.check_resume(cfg.replace(epochs=20, verbose=2)) == {
        "epochs": (10, 20), "verbose": (1, 2)}
    with pytest.raises(ValueError) as error:
        run.check_resume(cfg.replace(base_lr=0.002, seed=1, epochs=20))
    message = str(error.value)
    assert "base_lr 0.001 -> 0.002" in message and "seed 0 -> 1" in message
    assert "epochs" not in message.split("(")[0]  # allowed changes are not listed as refused
    with pytest.raises(ValueError, match="this model_dir holds a 128x128 run; you asked "
                                         "for 256x256 "):
        run.check_resume(cfg.replace(height=256, width=256))


def test_resume_keeps_the_global_batch_and_steps_per_epoch(tmp_path):
    run = RunDir(str(tmp_path))
    run.check_plan({"global_batch": 8, "steps_per_epoch": 4, "num_workers": 1})  # no run yet
    run.write_config(base_config(tmp_path), {"global_batch": 16, "steps_per_epoch": 4,
                                             "num_workers": 2})
    run.check_plan({"global_batch": 16, "steps_per_epoch": 4, "num_workers": 2})
    with pytest.raises(ValueError, match=r"would change global_batch 16 -> 8 \(workers 2 -> 1"):
        run.check_plan({"global_batch": 8, "steps_per_epoch": 4, "num_workers": 1})


def test_flags_json_records_the_changes_of_each_resume(tmp_path):
    run = RunDir(str(tmp_path))
    cfg = base_config(tmp_path)
    run.write_config(cfg, {"global_batch": 8})
    run.write_config(cfg.replace(epochs=20), {"global_batch": 8}, {"epochs": (10, 20)}, 40)
    flags = run.load_flags()
    assert flags["epochs"] == 20 and flags["plan"]["global_batch"] == 8
    assert [(c["step"], c["flags"]) for c in flags["changes"]] == [(40, {"epochs": [10, 20]})]
    assert run.load_config() == cfg.replace(epochs=20)
    (tmp_path / run_dir.FLAGS_JSON).write_text("{garbage")
    with pytest.raises(ValueError, match="flags.json: not valid JSON"):
        run.load_flags()
