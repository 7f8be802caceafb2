"""A converter worker that dies (kill -9, as the OOM killer does) stops the job.

The real `mcnn-convert-bbbc021` binary with --workers=2 on the fixture; a pool
worker is killed while it writes a shard. The converter must exit non-zero
within a bounded time with one line naming that shard, leave no temporary
file, and a re-run must resume and give the uninterrupted conversion's files.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mcnn_keras.data import manifest as shards_manifest
from mcnn_keras.data.bbbc021 import convert, fixture
from mcnn_keras.data.bbbc021 import options
import multiworker_util as mw

SIZE = 128
FLAGS = dict(height=SIZE, width=SIZE, num_shards=2, dataset="B", rotation_step=30,
             split="plate")


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    root = tmp_path_factory.mktemp("bbbc021")
    fixture.write_fixture(str(root), SIZE, SIZE, plates=2, sites=1, seed=3, progress=False)
    return root


def _command(download, out):
    return [sys.executable, "-m", "mcnn_keras.cli.convert_bbbc021",
            f"--bbbc021_dir={download}", f"--output_dir={out}", "--workers=2",
            "--noprogress"] + [f"--{k}={v}" for k, v in FLAGS.items()]


def _children(pid):
    """Pids of the processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def _open_files(pid):
    try:
        return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []


def _shard_writer(proc, out, timeout_s=240):
    """(pid of the pool worker that has a temporary shard open, the shard)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        for child in _children(proc.pid):
            for path in _open_files(child):
                name = os.path.basename(path)
                if path.startswith(str(out)) and ".tfrecord.tmp-" in name:
                    return child, os.path.join(os.path.dirname(path),
                                               name[1:name.index(".tmp-")])
        time.sleep(0.005)
    raise AssertionError(f"no worker writing a shard (exit {proc.poll()}): "
                         f"{proc.stderr.read()[-3000:] if proc.poll() is not None else ''}")


def _files(directory):
    """{name: bytes} of the shards, and the manifest without the flags it records."""
    result = {os.path.basename(p): open(p, "rb").read()
              for p in glob.glob(os.path.join(directory, "*.tfrecord"))}
    with open(os.path.join(directory, shards_manifest.MANIFEST)) as f:
        manifest = json.load(f)
    manifest.pop("flags")
    return result, manifest


@pytest.mark.slow
def test_a_killed_pool_worker_is_named_and_a_rerun_resumes(download, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(download, out), env=mw.worker_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        worker, shard = _shard_writer(proc, out)
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - killed < 30
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, stderr[-3000:]
    assert f"while converting shard {shard}:" in errors[0], errors[0]
    assert "signal 9" in errors[0] and "Traceback" not in stderr
    assert not os.path.exists(shard)
    assert not glob.glob(str(out / ".*.tmp-*"))

    rerun = subprocess.run(_command(download, out), env=mw.worker_env(),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    reference = tmp_path / "reference"
    convert.convert(options.ConvertOptions(str(download), str(reference), **FLAGS),
                    progress=False)
    assert _files(out) == _files(reference)


def _alive(pid):
    """True unless `pid` is gone or a zombie (dead, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_a_converter_killed_from_outside_takes_its_pool_with_it(download, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(download, out), env=mw.worker_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _shard_writer(proc, out)  # the pool is at work
        workers = _children(proc.pid)
        proc.kill()  # what the OOM killer or a scheduler's hard stop does
        proc.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.05)
        assert not [pid for pid in workers if _alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in [p for p in workers if _alive(p)] if "workers" in locals() else []:
            os.kill(pid, signal.SIGKILL)  # orphans of a failed check
    rerun = subprocess.run(_command(download, out), env=mw.worker_env(),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
