"""Export: reloaded in a fresh process it serves what Keras computes; its
metadata (format 2) says how to read raw data; `features` is ip0's ReLU;
`load_model` rebuilds it under any dtype policy."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mcnn_keras.train import config
from mcnn_keras.data import dataset
from mcnn_keras.serve import evaluation
from mcnn_keras.export import saved_model as export
from mcnn_keras.train import training
from mcnn_keras.data.classes import MOA_CLASSES
from mcnn_keras.model.network import build_model
from mcnn_keras.train import run_dir as run_layout
from mcnn_keras.train.restore import restore_model
from mcnn_keras.train.run_dir import RunDir
from mcnn_keras.data.bbbc021 import options
from mcnn_keras.data.conversion import normalization as conversion_normalization
from mcnn_keras.export import signatures as export_signatures
from mcnn_keras.export import statistics as export_statistics
from mcnn_keras.export import info as export_info
from cli_util import assert_one_line_error, run_binary
from data_util import one_epoch_run

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
    return one_epoch_run(tmp_path_factory, 52, 26, train_shards=2)


def test_reloaded_export_matches_the_keras_model(run_dir, tmp_path):
    model, _, _ = restore_model(RunDir(str(run_dir)))
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


def _signature_blocks(saved_model_cli_output):
    """{signature name: its text} from `saved_model_cli show --all`."""
    blocks, name = {}, None
    for line in saved_model_cli_output.splitlines():
        if line.startswith("signature_def['"):
            name = line.split("'")[1]
            blocks[name] = ""
        elif name:
            blocks[name] += line + "\n"
    return blocks


def test_saved_model_cli_shows_the_serving_and_features_signatures(run_dir):
    beside_python = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    cli = (beside_python if os.path.exists(beside_python) else shutil.which("saved_model_cli")
           or pytest.fail("saved_model_cli (installed with tensorflow) not found"))
    result = subprocess.run([cli, "show", "--all", "--dir", str(run_dir / "export")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    blocks = _signature_blocks(result.stdout)
    assert {"serving_default", "features"} <= set(blocks), result.stdout[-3000:]
    expected = {"serving_default": {"probabilities": ("DT_FLOAT", "(-1, 13)"),
                                    "class_ids": ("DT_INT64", "(-1)"),
                                    "class_names": ("DT_STRING", "(-1)")},
                "features": {"features": ("DT_FLOAT", "(-1, 512)"),
                             "probabilities": ("DT_FLOAT", "(-1, 13)"),
                             "class_ids": ("DT_INT64", "(-1)")}}
    for name, outputs in expected.items():
        inputs, _, rest = blocks[name].partition("The given SavedModel SignatureDef contains "
                                                 "the following output(s):")
        assert "inputs['images']" in inputs and "dtype: DT_UINT8" in inputs
        assert "shape: (-1, 128, 128, 3)" in inputs
        for output, (dtype, shape) in outputs.items():
            text = rest.split(f"outputs['{output}'] tensor_info:")[1].split("outputs[")[0]
            assert f"dtype: {dtype}" in text and f"shape: {shape}" in text, (output, text)


def test_export_binary_rewrites_the_export_from_the_latest_checkpoint(run_dir, tmp_path):
    target = tmp_path / "again"
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.export", f"--model_dir={run_dir}",
         f"--export_dir={target}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "normalization: none (no normalization.json beside the training shards" in (
        result.stdout)
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
    marker = json.loads((target / export_info.MARKER).read_text())
    assert marker["format_version"] == export_info.FORMAT_VERSION
    assert marker["class_names"] == list(MOA_CLASSES)
    assert (marker["height"], marker["width"], marker["num_classes"]) == (128, 128, 13)
    assert (run_dir / "export" / export_info.MARKER).exists()
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
        export.export_saved_model(restore_model(RunDir(str(run_dir)))[0], str(notes),
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


# --- Metadata (format 2) ----------------------------------------------------------

def test_metadata_v2_records_input_padding_channels_and_no_normalization(run_dir):
    path = run_dir / "export"
    info = export_info.read_export_info(path)
    assert info == json.loads((path / export_info.MARKER).read_text())
    assert info["format_version"] == 2 and info["class_names"] == list(MOA_CLASSES)
    assert (info["height"], info["width"], info["num_classes"]) == (128, 128, 13)
    assert info["input"] == {"name": "images", "dtype": "uint8", "shape": [None, 128, 128, 3],
                             "scaling": "x / 255 inside the model (layer 'scale')"}
    assert (info["padding"]["padded_height"], info["padding"]["padded_width"]) == (128, 128)
    assert info["padding"]["padded_sizes"] == {"724": 768}
    assert info["channels"] == ["DAPI", "Tubulin", "Actin"]
    assert info["channels_from"] == export_info.DEFAULT_CHANNELS_FROM
    # Bars shards were not written by the converter: no statistics, and why.
    assert info["normalization"] is None and export_info.load_statistics(path) is None
    assert "no normalization.json beside the training shards" in info["normalization_missing"]
    assert not (path / export_info.PREPROCESSING).exists()
    assert set(info["normalization_modes"]) == {"training", "plate", "image"}
    assert set(info["signatures"]) == {"serving_default", "features"}
    assert info["feature_dim"] == 512 and info["onnx"] is None


def test_724_inputs_record_their_padded_size():
    info = export_info.build_info(724, 724, MOA_CLASSES)
    assert (info["padding"]["padded_height"], info["padding"]["padded_width"]) == (768, 768)
    assert info["input"]["shape"] == [None, 724, 724, 3]


def _write_v1_export(model, path, class_names):
    """An export as format 1 wrote it (keras.export.ExportArchive, the old marker)."""
    import keras  # pylint: disable=import-outside-toplevel
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda images: {
        "probabilities": tf.nn.softmax(model(images, training=False))},
        input_signature=[tf.TensorSpec([None, 128, 128, 3], tf.uint8, name="images")])
    archive.write_out(str(path), verbose=False)
    (path / export_info.MARKER).write_text(json.dumps({
        "format_version": 1, "class_names": list(class_names), "height": 128, "width": 128,
        "num_classes": len(class_names), "input": "uint8 images [N, height, width, 3]"}))


def test_format_1_exports_still_read_and_load(run_dir, tmp_path):
    model, _, _ = restore_model(RunDir(str(run_dir)))
    _write_v1_export(model, tmp_path / "v1", MOA_CLASSES)
    info = export_info.read_export_info(tmp_path / "v1")
    assert info["format_version"] == 1 and info["class_names"] == list(MOA_CLASSES)
    assert info["channels"] == ["DAPI", "Tubulin", "Actin"] and info["normalization"] is None
    assert set(info["signatures"]) == {"serving_default"}
    assert export_info.load_statistics(tmp_path / "v1") is None
    images = np.random.default_rng(1).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    loaded = export_info.load_model(str(tmp_path / "v1"))
    np.testing.assert_array_equal(loaded(images).numpy(), model(images).numpy())


@pytest.mark.parametrize("kind", ["missing", "file", "no_marker", "garbage", "future",
                                  "no_class_names", "no_saved_model"])
def test_read_export_info_names_what_is_not_an_export(kind, run_dir, tmp_path):
    path = tmp_path / "export"
    if kind == "file":
        path.write_text("not an export")
    elif kind != "missing":
        shutil.copytree(run_dir / "export", path)
        marker = path / export_info.MARKER
        info = json.loads(marker.read_text())
        if kind == "no_marker":
            marker.unlink()
        elif kind == "garbage":
            marker.write_bytes(b"\xff{ not json")
        elif kind == "future":
            marker.write_text(json.dumps({**info, "format_version": 99}))
        elif kind == "no_class_names":
            marker.write_text(json.dumps({k: v for k, v in info.items() if k != "class_names"}))
        else:
            (path / "saved_model.pb").unlink()
    says = {"missing": "no such export directory", "file": "is a file, not an export",
            "no_marker": "is not an export of mcnn-keras (no mcnn_export.json",
            "garbage": "unreadable", "future": "format_version 99 is not one this",
            "no_class_names": "'class_names' missing",
            "no_saved_model": "no saved_model.pb"}[kind]
    for function in (export_info.read_export_info, export_info.load_statistics, export_info.load_model):
        with pytest.raises(FileNotFoundError if kind == "missing" else ValueError) as e:
            function(str(path))
        assert str(path) in str(e.value) and says in str(e.value)
        assert "\n" not in str(e.value)


# --- The features signature and load_model --------------------------------------------

def test_features_signature_is_the_relu_of_the_first_dense_layer(run_dir):
    import keras  # pylint: disable=import-outside-toplevel
    model, _, _ = restore_model(RunDir(str(run_dir)))
    images = np.random.default_rng(2).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    served = tf.saved_model.load(str(run_dir / "export"))
    out = served.signatures["features"](images=tf.constant(images))
    assert out["features"].dtype == tf.float32 and out["features"].shape == (3, 512)
    flat = keras.Model(model.input, model.get_layer("flatten").output)(images).numpy()
    kernel, bias = model.get_layer("ip0").get_weights()
    expected = np.maximum(flat.astype(np.float64) @ kernel + bias, 0.0)
    np.testing.assert_allclose(out["features"].numpy(), expected, rtol=1e-4, atol=1e-5)
    assert (expected == 0).any() and (expected > 0).any()  # the ReLU is applied
    default = served.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_array_equal(out["probabilities"].numpy(), default["probabilities"].numpy())
    np.testing.assert_array_equal(out["class_ids"].numpy(), default["class_ids"].numpy())


def test_load_model_fp32_equals_the_saved_model_and_bf16_is_close(run_dir):
    path = str(run_dir / "export")
    images = np.random.default_rng(3).integers(0, 256, (4, 128, 128, 3), dtype=np.uint8)
    served = tf.saved_model.load(path).signatures["features"](images=tf.constant(images))
    fp32 = export_info.load_model(path)
    assert fp32.get_layer("ip0").compute_dtype == "float32"
    np.testing.assert_allclose(tf.nn.softmax(fp32(images)).numpy(),
                               served["probabilities"].numpy(), rtol=1e-5, atol=1e-7)
    features = export_signatures.features_model(fp32)(images)["features"].numpy()
    np.testing.assert_allclose(features, served["features"].numpy(), rtol=1e-5, atol=1e-5)
    bf16 = export_info.load_model(path, dtype_policy="mixed_bfloat16")
    assert bf16.get_layer("s1_conv1").compute_dtype == "bfloat16"
    assert bf16.get_layer("ip0").compute_dtype == "bfloat16"
    probabilities = tf.nn.softmax(tf.cast(bf16(images), tf.float32)).numpy()
    np.testing.assert_allclose(probabilities, served["probabilities"].numpy(), atol=0.03)
    bf16_features = tf.cast(export_signatures.features_model(bf16)(images)["features"], tf.float32)
    np.testing.assert_allclose(bf16_features.numpy(), served["features"].numpy(), rtol=0.05,
                               atol=0.05 * float(np.abs(served["features"].numpy()).max()))


def test_the_saved_model_holds_each_weight_once(run_dir):
    model, _, _ = restore_model(RunDir(str(run_dir)))
    weight_bytes = sum(w.numpy().nbytes for w in model.weights)
    data = [f for f in os.listdir(run_dir / "export" / "variables") if ".data-" in f]
    stored = sum(os.path.getsize(run_dir / "export" / "variables" / f) for f in data)
    assert weight_bytes <= stored < 1.1 * weight_bytes  # keras' ExportArchive: 2x


# --- The converter's statistics ---------------------------------------------------------

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The BBBC021 fixture converted with one fold per plate: the statistics sit in
    the output directory, the shards in fold-00/ and fold-01/."""
    from mcnn_keras.data.bbbc021 import convert, fixture  # pylint: disable=import-outside-toplevel
    root = tmp_path_factory.mktemp("bbbc021")
    fixture.write_fixture(str(root), 128, 128, plates=2, sites=1, compounds_per_class=1,
                          seed=0, progress=False)
    data = tmp_path_factory.mktemp("converted")
    convert.convert(options.ConvertOptions(str(root), str(data), height=128, width=128,
                                           split="plate", fold="all", num_shards=1),
                    progress=False)
    return data


@pytest.fixture(scope="module")
def converted_run(converted, tmp_path_factory):
    run = tmp_path_factory.mktemp("converted_run")
    training.train(config.TrainConfig.from_flat(dict(
        train_files=str(converted / "fold-00" / "train-*.tfrecord"),
        val_files=str(converted / "fold-00" / "val-*.tfrecord"), model_dir=str(run),
        height=128, width=128, batch_size=4, epochs=1, warmup_epochs=0.5, base_lr=0.01,
        verbose=0, tensorboard=False, seed=1)))
    return run


def test_training_exports_the_converters_statistics(converted, converted_run):
    path = converted_run / "export"
    info = export_info.read_export_info(path)
    saved = json.loads((converted / conversion_normalization.STATS_JSON).read_text())
    norm = info["normalization"]
    assert norm["source"] == str(converted) and norm["directory"] == export_info.PREPROCESSING
    assert norm["plates"] == sorted(saved["plates"]) and len(norm["plates"]) == 2
    assert norm["sigma"] == saved["sigma"] and info["normalization_missing"] is None
    assert info["channels"] == saved["channels"] == norm["channels"]
    assert info["channels_from"] == str(converted / conversion_normalization.STATS_JSON)
    for name in (conversion_normalization.STATS_JSON, conversion_normalization.MAPS_NPZ):
        assert (path / export_info.PREPROCESSING / name).read_bytes() == (
            converted / name).read_bytes()
    stats, expected = export_info.load_statistics(path), conversion_normalization.load_statistics(str(converted))
    assert sorted(stats) == sorted(expected)
    for plate, plate_stats in expected.items():
        for field in ("lowres_map", "floor", "low", "high"):
            np.testing.assert_array_equal(getattr(stats[plate], field),
                                          getattr(plate_stats, field))
        assert stats[plate].block == plate_stats.block


def test_statistics_beside_the_shards_several_sources_and_damaged_files(converted, tmp_path):
    beside = tmp_path / "beside"
    beside.mkdir()
    for shard in (converted / "fold-00").glob("train-*.tfrecord"):
        shutil.copy(shard, beside)
    for name in (conversion_normalization.STATS_JSON, conversion_normalization.MAPS_NPZ):
        shutil.copy(converted / name, beside)
    shards = str(beside / "train-*.tfrecord")
    assert export_statistics.find_training_statistics(shards) == ([str(beside)], str(beside), None)
    folds = str(converted / "fold-01" / "train-*.tfrecord")
    assert export_statistics.find_training_statistics(folds)[1:] == (str(converted), None)
    _, source, why = export_statistics.find_training_statistics(f"{shards},{folds}")
    assert source is None and "several conversions" in why
    _, source, why = export_statistics.find_training_statistics(str(tmp_path / "none-*.tfrecord"))
    assert source is None and "no files match" in why

    # Damaged statistics: the export (at the end of a long run) is still written,
    # and says why it records no normalisation.
    (beside / conversion_normalization.MAPS_NPZ).write_bytes(b"not a zip")
    info = export.export_saved_model(build_model(128, 128), str(tmp_path / "export"),
                                     MOA_CLASSES, train_files=shards)
    assert info["normalization"] is None and "unreadable statistics" in (
        info["normalization_missing"])
    assert export_info.read_export_info(tmp_path / "export") == info
    assert not (tmp_path / "export" / export_info.PREPROCESSING).exists()


def test_the_export_knows_the_run_directory_layout():
    # export/ sits below train/: it names the run's files itself; they must agree.
    assert (export.RUN_EXPORT, export.RUN_FLAGS_JSON) == (run_layout.EXPORT, run_layout.FLAGS_JSON)


KILLED_MID_EXPORT = """
import os, signal, sys
import tensorflow as tf
save = tf.saved_model.save
def killed(*args, **kwargs):  # the SavedModel is in the staging directory: kill -9
    save(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
tf.saved_model.save = killed
sys.argv = ["mcnn-export", *sys.argv[1:]]
from mcnn_keras.cli import export
export.run()
"""


def test_a_rerun_removes_the_staging_directory_of_a_killed_export(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / ".export.tmp-mine").mkdir()  # a user's, not of our scheme
    before = set(os.listdir(run))
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_EXPORT, f"--model_dir={run}"],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    staging = [n for n in set(os.listdir(run)) - before]
    assert len(staging) == 1 and staging[0].startswith(".export.tmp-"), staging
    assert os.path.exists(run / staging[0] / "saved_model.pb")
    again = run_binary("mcnn_keras.cli.export", f"--model_dir={run}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert set(os.listdir(run)) == before
    assert (run / "export" / export_info.MARKER).exists()
