"""SavedModel export: reloaded in a fresh process it serves what Keras computes."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mcnn_keras import dataset, evaluation, export, training
from mcnn_keras.classes import MOA_CLASSES
from mcnn_keras.run_dir import RunDir
from cli_util import assert_one_line_error, run_binary
from data_util import bars_split_dir, small_run_config

pytestmark = pytest.mark.slow

SERVE = """
import sys, numpy as np, tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
out = served.signatures["serving_default"](images=tf.constant(np.load(sys.argv[2])))
np.save(sys.argv[3], out["probabilities"].numpy())
print(",".join(n.decode() for n in out["class_names"].numpy()))
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    data = bars_split_dir(tmp_path_factory.mktemp("bars"), 52, 26, train_shards=2)
    run = tmp_path_factory.mktemp("run")
    training.train(small_run_config(data, run, epochs=1, tensorboard=False))
    return run


def test_reloaded_export_matches_the_keras_model(run_dir, tmp_path):
    model, _, _ = RunDir(str(run_dir)).restore_model()
    images = np.random.default_rng(0).integers(0, 256, (4, 128, 128, 3), dtype=np.uint8)
    expected = tf.nn.softmax(model(images)).numpy()
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run(
        [sys.executable, "-c", SERVE, str(run_dir / "export"), str(tmp_path / "images.npy"),
         str(tmp_path / "probs.npy")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    served = np.load(tmp_path / "probs.npy")
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    names = result.stdout.strip().splitlines()[-1].split(",")
    assert names == [MOA_CLASSES[i] for i in expected.argmax(axis=1)]


def test_saved_model_cli_shows_the_uint8_serving_signature(run_dir):
    beside_python = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    cli = (beside_python if os.path.exists(beside_python) else shutil.which("saved_model_cli")
           or pytest.fail("saved_model_cli (installed with tensorflow) not found"))
    result = subprocess.run([cli, "show", "--all", "--dir", str(run_dir / "export")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "signature_def['serving_default']" in out
    assert "dtype: DT_UINT8" in out and "shape: (-1, 128, 128, 3)" in out
    for name in ("probabilities", "class_ids", "class_names"):
        assert f"outputs['{name}']" in out


def test_export_binary_rewrites_the_export_from_the_latest_checkpoint(run_dir, tmp_path):
    target = tmp_path / "again"
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.export", f"--model_dir={run_dir}",
         f"--export_dir={target}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    a = evaluation.saved_model_predictor(str(run_dir / "export"))
    b = evaluation.saved_model_predictor(str(target))
    images = np.full((2, 128, 128, 3), 77, np.uint8)
    np.testing.assert_array_equal(a(images), b(images))
    missing = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.export", f"--model_dir={tmp_path / 'nope'}"],
        capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "flags.json not found" in missing.stderr
    # Every export carries its marker; an export of ours is replaced in place.
    marker = json.loads((target / export.MARKER).read_text())
    assert marker["format_version"] == export.FORMAT_VERSION
    assert marker["class_names"] == list(MOA_CLASSES)
    assert (marker["height"], marker["width"], marker["num_classes"]) == (128, 128, 13)
    assert (run_dir / "export" / export.MARKER).exists()
    again = run_binary("mcnn_keras.cli.export", f"--model_dir={run_dir}",
                       f"--export_dir={target}")
    assert again.returncode == 0, again.stderr[-2000:]


def test_export_refuses_what_it_did_not_write_and_moves_nothing(run_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"jpeg")
    for path, says in ((notes, "exists and is not a directory"),
                       (photos, "is not an export of mcnn-keras (it has no mcnn_export.json)")):
        assert_one_line_error(run_binary("mcnn_keras.cli.export", f"--model_dir={run_dir}",
                                         f"--export_dir={path}"), f"--export_dir={path}", says)
    assert notes.read_text() == "mine" and os.listdir(photos) == ["a.jpg"]
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "photos"]  # nothing moved aside
    with pytest.raises(ValueError, match="exists and is not a directory"):
        export.export_saved_model(RunDir(str(run_dir)).restore_model()[0], str(notes),
                                  MOA_CLASSES)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "photos"]


def test_a_run_dirs_export_from_before_the_marker_counts_as_ours(tmp_path):
    legacy = tmp_path / "run" / "export"
    legacy.mkdir(parents=True)
    (legacy / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="not an export of mcnn-keras"):
        export.check_export_dir(str(legacy))  # not in a run directory
    (tmp_path / "run" / "flags.json").write_text("{}")
    export.check_export_dir(str(legacy))
    export.check_export_dir(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    export.check_export_dir(str(tmp_path / "empty"))


def test_evaluate_binary_reports_top1_confusion_and_per_treatment(run_dir):
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.evaluate", f"--model_dir={run_dir}"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert report["images"] == 26 and 0 <= report["top1"] <= report["top5"] <= 1
    rows = (run_dir / "eval" / "confusion_matrix.csv").read_text().splitlines()
    assert len(rows) == 14 and sum(int(v) for r in rows[1:] for v in r.split(",")[1:]) == 26
    assert (run_dir / "eval" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert "per_treatment" in report
    # The exported SavedModel gives the same image-level accuracy.
    files = dataset.list_files(RunDir(str(run_dir)).load_config().data.val_files)
    served = evaluation.evaluate(evaluation.saved_model_predictor(str(run_dir / "export")),
                                 files, str(run_dir / "eval_served"), MOA_CLASSES)
    assert served["top1"] == pytest.approx(report["top1"])
