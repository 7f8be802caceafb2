"""The one atomic-write mechanism: temporary name, rename, cleanup."""

import contextlib
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from mcnn_keras.io import atomic
from mcnn_keras.io import plots


def names(directory):
    return sorted(os.listdir(directory))


def test_successful_write_replaces_and_leaves_only_the_target(tmp_path):
    path = tmp_path / "flags.json"
    path.write_text("old")
    with atomic.atomic_file(path) as tmp:
        # The temporary is a sibling (same file system: the rename is atomic),
        # of the one scheme that remove_temporaries knows.
        assert os.path.dirname(tmp) == str(tmp_path)
        assert atomic.is_temporary(os.path.basename(tmp)) and tmp.endswith(".json")
        with open(tmp, "w") as f:
            f.write("new")
        assert path.read_text() == "old"  # not yet: readers still see the old
    assert path.read_text() == "new"
    assert names(tmp_path) == ["flags.json"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_old_content_and_no_temporary(tmp_path, error):
    path = tmp_path / "manifest.json"
    path.write_text("old")
    with pytest.raises(error):
        with atomic.atomic_file(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise error("disk full")
    assert path.read_text() == "old"
    assert names(tmp_path) == ["manifest.json"]
    with pytest.raises(RuntimeError):  # a new target is not created either
        with atomic.atomic_file(tmp_path / "new.json") as tmp:
            open(tmp, "w").close()
            raise RuntimeError
    assert names(tmp_path) == ["manifest.json"]


def test_text_and_json_writers(tmp_path):
    atomic.write_json_atomic(tmp_path / "a.json", {"b": 1, "a": [2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [2], "b": 1}
    with pytest.raises(TypeError):
        atomic.write_text_atomic(tmp_path / "a.json", b"not text")
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [2], "b": 1}
    assert names(tmp_path) == ["a.json"]


def test_format_writers_keep_the_final_name_exactly(tmp_path):
    maps = {"plate": np.arange(6.0).reshape(2, 3)}
    with atomic.atomic_file(tmp_path / "illumination.npz") as tmp:
        np.savez(tmp, **maps)  # would append ".npz" to a name without it
    plane = np.arange(12, dtype=np.uint16).reshape(3, 4)
    with atomic.atomic_file(tmp_path / "w1.tif") as tmp:
        tifffile.imwrite(tmp, plane, photometric="minisblack")
    plots.plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], str(tmp_path / "cm.png"))
    assert names(tmp_path) == ["cm.png", "illumination.npz", "w1.tif"]
    np.testing.assert_array_equal(np.load(tmp_path / "illumination.npz")["plate"], maps["plate"])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "w1.tif"), plane)
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # format kept


def test_remote_paths_are_staged_locally_and_uploaded_once():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    directory = "ram://test_atomic"
    path = f"{directory}/x.txt"
    for text, error in (("new", None), ("half", RuntimeError)):
        with pytest.raises(error) if error else contextlib.nullcontext():
            with atomic.atomic_file(path) as tmp:
                assert "://" not in tmp and os.path.basename(tmp).startswith(".x.txt.tmp-")
                with tf.io.gfile.GFile(tmp, "w") as f:
                    f.write(text)
                assert tf.io.gfile.exists(path) == bool(error)  # no object before the end
                if error:
                    raise error
        with tf.io.gfile.GFile(path) as f:
            assert f.read() == "new"
        assert tf.io.gfile.listdir(directory) == ["x.txt"]


def test_importable_and_usable_without_tensorflow(tmp_path):
    script = (
        "import importlib.util, sys\n"
        "sys.modules['tensorflow'] = None  # any import of it fails\n"
        f"spec = importlib.util.spec_from_file_location('atomic', {atomic.__file__!r})\n"
        "atomic = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(atomic)\n"
        f"atomic.write_text_atomic({str(tmp_path / 'x.txt')!r}, 'ok')\n")
    subprocess.run([sys.executable, "-c", script], check=True)
    assert (tmp_path / "x.txt").read_text() == "ok"


def test_remove_temporaries_removes_only_the_scheme(tmp_path):
    leftover_file = atomic.temporary_path(tmp_path / "train-00000-of-00002.tfrecord")
    open(leftover_file, "wb").write(b"half a shard")
    leftover_dir = atomic.temporary_path(tmp_path / "export")
    os.makedirs(os.path.join(leftover_dir, "variables"))
    users = ["notes.tmp.txt", ".hidden", "a.tmp-1.txt", "train-00000-of-00002.tfrecord",
             ".a.txt.tmp-0123456789abcdef0123456789abcdef.csv",  # extension not its own
             ".a.tmp-0123456789abcdef",                          # not 32 hex digits
             ".tmp-0123456789abcdef0123456789abcdef"]            # no target name
    for name in users:
        (tmp_path / name).write_text("mine")
    os.makedirs(tmp_path / "models.tmp")
    removed = atomic.remove_temporaries(str(tmp_path))
    assert removed == sorted([leftover_file, leftover_dir])
    assert names(tmp_path) == sorted(users + ["models.tmp"])
    assert atomic.remove_temporaries(str(tmp_path)) == []


def test_is_temporary_accepts_target_names_that_look_like_temporaries():
    target = ".odd.tmp-0123456789abcdef0123456789abcdef"
    assert atomic.is_temporary(os.path.basename(atomic.temporary_path(target)))
    assert atomic.is_temporary(os.path.basename(atomic.temporary_path("archive.tar.gz")))


def _export(directory, text):
    os.makedirs(directory)
    with open(os.path.join(directory, "saved_model.pb"), "w") as f:
        f.write(text)


def test_atomic_directory_replaces_or_leaves_the_old_directory(tmp_path, monkeypatch):
    path = tmp_path / "export"
    with atomic.atomic_directory(path) as tmp:
        assert atomic.is_temporary(os.path.basename(tmp))
        _export(tmp, "v1")
    with pytest.raises(RuntimeError):
        with atomic.atomic_directory(path) as tmp:
            _export(tmp, "v2")
            raise RuntimeError("export failed")
    assert (path / "saved_model.pb").read_text() == "v1"
    assert names(tmp_path) == ["export"]

    # The second rename fails after the old directory was moved aside: put back.
    rename = os.rename

    def failing_rename(src, dst):
        if os.fspath(dst) == str(path) and "v3" in open(os.path.join(src, "saved_model.pb")).read():
            raise OSError("no space")
        rename(src, dst)
    monkeypatch.setattr(atomic.os, "rename", failing_rename)
    with pytest.raises(OSError):
        with atomic.atomic_directory(path) as tmp:
            _export(tmp, "v3")
    monkeypatch.undo()
    assert (path / "saved_model.pb").read_text() == "v1"
    assert names(tmp_path) == ["export"]

    with atomic.atomic_directory(path) as tmp:
        _export(tmp, "v4")
    assert (path / "saved_model.pb").read_text() == "v4"
    assert names(tmp_path) == ["export"]


def _dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _renamed_writer(path, pid):
    """`temporary_path(path)` as the process `pid` of this host would have named it."""
    tmp = atomic.temporary_path(path)
    return tmp.replace(f"-{os.getpid()}-", f"-{pid}-", 1)


def test_temporary_names_carry_their_writers_pid_and_old_names_still_count(tmp_path):
    name = os.path.basename(atomic.temporary_path(tmp_path / "p.csv"))
    assert f"-{os.getpid()}-" in name and name.endswith(".csv")
    assert atomic.is_temporary(name)
    assert atomic.is_temporary(".p.csv.tmp-0123456789abcdef0123456789abcdef.csv")  # old scheme


def test_remove_temporaries_of_named_outputs_spares_live_writers_and_other_files(tmp_path):
    """The cleanup a binary runs before it writes its outputs: only their
    temporaries, and of those not one that a live process of this host writes."""
    dead, old = _renamed_writer(tmp_path / "p.csv", _dead_pid()), \
        str(tmp_path / ".p.csv.tmp-0123456789abcdef0123456789abcdef.csv")
    staging = _renamed_writer(tmp_path / "export", _dead_pid())
    os.makedirs(os.path.join(staging, "variables"))
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            alive = _renamed_writer(tmp_path / "p.csv", live.pid)
            other = atomic.temporary_path(tmp_path / "q.csv")  # another output's
            users = ["p.csv", "notes.txt", ".p.csv.tmp-mine.csv"]
            for path in [dead, old, alive, other] + [str(tmp_path / n) for n in users]:
                open(path, "w").close()
            removed = atomic.remove_temporaries(str(tmp_path), ["p.csv", "export"])
            assert removed == sorted([dead, old, staging])
            assert names(tmp_path) == sorted(
                users + [os.path.basename(alive), os.path.basename(other)])
        finally:
            live.kill()
    assert atomic.remove_temporaries(str(tmp_path / "missing"), ["p.csv"]) == []
    assert atomic.remove_temporaries("s3://bucket/out", ["p.csv"]) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_write_that_finds_no_room_names_the_target_and_keeps_the_old(tmp_path, code):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(atomic.WriteError) as error:
        with atomic.atomic_file(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise OSError(code, os.strerror(code))
    assert str(error.value) == (f"{target}: cannot write it ({os.strerror(code)}); the "
                                f"previous version, if any, is untouched")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["out.csv"]
    with pytest.raises(KeyError):  # any other error passes through as it is
        with atomic.atomic_file(target):
            raise KeyError("mine")
