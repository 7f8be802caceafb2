"""mcnn-predict: raw TIFFs, images and TFRecords in; what the converted records give out.

One small run (BBBC021 fixture at 128 x 128 -> converter -> one training
epoch -> export with the converter's statistics) is shared by every test.
"""

import contextlib
import csv
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from mcnn_keras.train import config
from mcnn_keras.data import dataset
from mcnn_keras.serve import evaluation, treatments
from mcnn_keras.io import features_table
from mcnn_keras.io import records
from mcnn_keras.train import training
from mcnn_keras.data.bbbc021 import convert, fixture, metadata
from mcnn_keras.serve.predict.options import PredictOptions
from mcnn_keras.serve.predict.predictor import CSV_COLUMNS, predict
from mcnn_keras.data.bbbc021 import options
from cli_util import assert_one_line_error, run_binary

pytestmark = pytest.mark.slow
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(fixture dir, converted data dir, export dir) of one small run."""
    base = tmp_path_factory.mktemp("predict")
    root, data, run = base / "bbbc021", base / "data", base / "run"
    fixture.write_fixture(str(root), 128, 128, plates=2, sites=2, compounds_per_class=1,
                          seed=0, progress=False)
    convert.convert(options.ConvertOptions(
        str(root), str(data), height=128, width=128, split="random", val_fraction=0.25,
        num_shards=2), progress=False)
    training.train(config.TrainConfig.from_flat(dict(
        train_files=str(data / "train-*.tfrecord"), val_files=str(data / "val-*.tfrecord"),
        model_dir=str(run), height=128, width=128, batch_size=8, epochs=1,
        warmup_epochs=0.5, base_lr=0.01, verbose=0, tensorboard=False, seed=1)))
    return root, data, run / "export"


@pytest.fixture(scope="module")
def evaluated(trained):
    """{(plate, well, site): (probabilities, metadata)} of every converted record."""
    _, data, export_dir = trained
    files = dataset.list_files(str(data / "*.tfrecord"))
    probabilities, _, meta = evaluation.predict_files(
        evaluation.saved_model_predictor(str(export_dir)), files, batch_size=32)
    return {(m["plate"], m["well"], m["site"]): (p, m) for p, m in zip(probabilities, meta)}


def predict_cli(export_dir, inputs, output_csv, *flags):
    return run_binary("mcnn_keras.cli.predict", f"--saved_model={export_dir}",
                      f"--inputs={inputs}", f"--output_csv={output_csv}", "--noprogress", *flags)


def summary_of(result):
    """The one JSON line on stdout."""
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def read_rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        return list(reader)


def assert_rows_match(rows, evaluated, expected_count):
    """Each row's top-5 classes and probabilities are the converted record's."""
    class_names = evaluated_class_names()
    matched = 0
    for row in rows:
        key = (row["plate"], row["well"], row["site"])
        if key not in evaluated:  # unlabelled rows were not converted
            assert row["true_class"] == ""
            continue
        probabilities, meta = evaluated[key]
        assert row["true_class"] == meta["class_name"]
        for k in range(1, 6):
            index = class_names.index(row[f"top{k}_class"])
            assert abs(float(row[f"top{k}_prob"]) - probabilities[index]) < TOLERANCE, (key, k)
        assert row["predicted_class"] == class_names[int(np.argmax(probabilities))]
        matched += 1
    assert matched == expected_count


def evaluated_class_names():
    from mcnn_keras.data.classes import MOA_CLASSES  # pylint: disable=import-outside-toplevel
    return list(MOA_CLASSES)


def rewrite_csv(source, target, change=None, keep=None, drop=()):
    """A copy of the CSV `source` (rows filtered by `keep`, edited by `change`,
    columns `drop`ped)."""
    with open(source, newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = [c for c in reader.fieldnames if c not in drop], list(reader)
    rows = [change(dict(r)) if change else r for r in rows if keep is None or keep(r)]
    with open(target, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return target


def labelled_keys(root):
    moa = metadata.read_moa(str(root / metadata.MOA_CSV))
    return {(c, metadata.concentration_key(x, "")) for c, x in moa}


# --- the round trip -----------------------------------------------------------------

def test_raw_tiffs_give_the_converted_records_probabilities(trained, evaluated, tmp_path):
    root, _, export_dir = trained
    out, features = tmp_path / "predictions.csv", tmp_path / "features.parquet"
    result = predict_cli(export_dir, root / metadata.IMAGE_CSV, out,
                         f"--features_out={features}", "--batch_size=5")
    summary = summary_of(result)
    rows = read_rows(out)
    assert summary["fields"] == len(rows) == 60 and summary["skipped"] == 0
    assert summary["source"] == "bbbc021_csv" and summary["normalization"] == "training"
    assert summary["labelled_fields"] == len(evaluated) == 56
    assert {r["normalization"] for r in rows} == {"training"}
    assert all(r["input_files"].count(".tif") == 3 for r in rows)
    assert_rows_match(rows, evaluated, 56)
    # Labels known: image-level and per-treatment accuracy, as mcnn-evaluate computes them.
    class_names = evaluated_class_names()
    labels = np.array([class_names.index(m["class_name"]) for _, m in evaluated.values()])
    probabilities = np.array([p for p, _ in evaluated.values()])
    assert summary["top1"] == pytest.approx(np.mean(probabilities.argmax(1) == labels))
    assert "top-1" in result.stderr and "per-treatment accuracy" in result.stderr
    field_metadata = [m for _, m in evaluated.values()]
    expected = treatments.per_treatment_accuracy(probabilities, labels, field_metadata,
                                                class_names)
    assert summary["per_treatment_accuracy"] == pytest.approx(expected["accuracy"])
    assert summary["treatments"] == expected["num_treatments"] == 13
    assert summary["fields_per_s"] > 0 and summary["dtype"] == "float32"

    # The features table: 512 features per field, with its metadata.
    table = features_table.read_table(str(features))
    assert table.features.shape == (60, 512) and np.isfinite(table.features).all()
    assert table.feature_names[0] == "MCNN_0000" and table.feature_names[-1] == "MCNN_0511"
    assert table.metadata["Metadata_Plate"] == [r["plate"] for r in rows]
    assert table.metadata["Metadata_Well"] == [r["well"] for r in rows]
    assert table.metadata["Metadata_Compound"] == [r["compound"] for r in rows]
    assert table.metadata["Metadata_MoA"] == [r["true_class"] for r in rows]
    assert table.metadata["Metadata_Predicted_MoA"] == [r["predicted_class"] for r in rows]
    assert table.extra["normalization"] == "training"


def test_library_gives_every_probability_of_the_converted_records(trained, evaluated):
    root, _, export_dir = trained
    result = predict(PredictOptions(saved_model=str(export_dir),
                                    inputs=str(root / metadata.IMAGE_CSV),
                                    output_csv=str(root.parent / "lib.csv"), progress=False))
    matched = 0
    for field, probabilities in zip(result.fields, result.probabilities):
        key = (field.metadata["plate"], field.metadata["well"], field.metadata["site"])
        if key in evaluated:
            np.testing.assert_allclose(probabilities, evaluated[key][0], atol=TOLERANCE, rtol=0)
            matched += 1
    assert matched == 56


def write_index_csv(root, target, with_labels=True):
    """The fixture's fields as an index CSV (paths relative to it, in a sub-folder)."""
    moa = metadata.read_moa(str(root / metadata.MOA_CSV))
    with open(root / metadata.IMAGE_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(metadata.CHANNELS) + ["plate", "well", "site", "compound",
                                         "concentration", "replicate"]
    target.parent.mkdir(exist_ok=True)
    with open(target, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns + (["label"] if with_labels else []))
        for row in rows:
            files = [os.path.relpath(root / row[f"Image_PathName_{c}"] /
                                     row[f"Image_FileName_{c}"], target.parent)
                     for c in metadata.CHANNELS]
            conc = row["Image_Metadata_Concentration"]
            label = moa.get((row["Image_Metadata_Compound"], float(conc)), "")
            writer.writerow(files + [
                row["Image_Metadata_Plate_DAPI"], row["Image_Metadata_Well_DAPI"],
                metadata.parse_site(row["Image_FileName_DAPI"], ""),
                row["Image_Metadata_Compound"], conc, row["Replicate"]]
                + ([label] if with_labels else []))
    return target


def test_an_index_csv_gives_the_converted_records_probabilities(trained, evaluated, tmp_path):
    root, _, export_dir = trained
    index = write_index_csv(root, tmp_path / "lists" / "index.csv")
    out = tmp_path / "p.csv"
    summary = summary_of(predict_cli(export_dir, index, out, "--readers=3"))
    assert summary["source"] == "index_csv" and summary["normalization"] == "training"
    assert summary["fields"] == 60 and summary["labelled_fields"] == 56
    rows = read_rows(out)
    assert_rows_match(rows, evaluated, 56)
    assert rows[0]["row"] == "2" and rows[0]["input_files"].count(";") == 2

    # No label column: the fields are unlabelled, nothing else changes.
    unlabelled = write_index_csv(root, tmp_path / "lists" / "new.csv", with_labels=False)
    result = predict(PredictOptions(saved_model=str(export_dir), inputs=str(unlabelled),
                                    output_csv=str(out), progress=False))
    assert "top1" not in result.summary and result.summary["fields"] == 60
    assert {r["true_class"] for r in read_rows(out)} == {""}
    # A channel column the CSV does not have: named, with its flag.
    with pytest.raises(ValueError, match="no column 'Hoechst' \\(--channel_columns\\)"):
        predict(PredictOptions(saved_model=str(export_dir), inputs=str(index),
                               output_csv=str(out), channel_columns="Hoechst,Tubulin,Actin",
                               progress=False))


def test_plate_statistics_from_the_training_fields_equal_the_converters(trained, evaluated,
                                                                         tmp_path):
    """The converter's first pass sees the labelled fields: on the same fields,
    --normalization=plate computes the same statistics, hence the same answer."""
    root, _, export_dir = trained
    labelled = labelled_keys(root)
    image_csv = rewrite_csv(root / metadata.IMAGE_CSV, root / "labelled_only.csv", keep=lambda r: (
        r["Image_Metadata_Compound"],
        float(r["Image_Metadata_Concentration"])) in labelled)
    result = predict(PredictOptions(saved_model=str(export_dir), inputs=str(image_csv),
                                    output_csv=str(tmp_path / "p.csv"), normalization="plate",
                                    progress=False))
    assert result.summary["normalization"] == "plate" and result.summary["fields"] == 56
    for field, probabilities in zip(result.fields, result.probabilities):
        key = (field.metadata["plate"], field.metadata["well"], field.metadata["site"])
        np.testing.assert_allclose(probabilities, evaluated[key][0], atol=TOLERANCE, rtol=0)


def test_a_new_plate_needs_plate_or_image_normalisation(trained, tmp_path):
    root, _, export_dir = trained
    renamed = rewrite_csv(root / metadata.IMAGE_CSV, root / "new_plate.csv", change=lambda r: {
        **r, "Image_Metadata_Plate_DAPI": "Week9_99999"})
    out = tmp_path / "p.csv"
    assert_one_line_error(predict_cli(export_dir, renamed, out), "new_plate.csv:2",
                          "plate 'Week9_99999'", "--normalization=plate",
                          "--normalization=image")
    assert not out.exists()
    for mode in ("plate", "image"):
        result = predict(PredictOptions(saved_model=str(export_dir), inputs=str(renamed),
                                        output_csv=str(out), normalization=mode,
                                        progress=False))
        assert result.summary["fields"] == 60 and result.summary["normalization"] == mode
        assert {r["normalization"] for r in read_rows(out)} == {mode}
        assert np.isfinite(result.probabilities).all()


# --- images and TFRecords --------------------------------------------------------------

def test_rgb_images_and_tfrecords_give_the_records_probabilities(trained, evaluated,
                                                                 tmp_path):
    _, data, export_dir = trained
    images = tmp_path / "images"
    images.mkdir()
    written = 0
    for path in sorted(data.glob("val-*.tfrecord")):
        for image, _, meta in records.read_examples(str(path)):
            name = f"{meta['plate']}_{meta['well']}_{meta['site']}"
            if written % 2:
                Image.fromarray(image).save(images / f"{name}.png")
            else:
                tifffile.imwrite(images / f"{name}.tif", image, photometric="rgb")
            written += 1
    out = tmp_path / "images.csv"
    summary = summary_of(predict_cli(export_dir, f"{images}/*.png,{images}/*.tif", out))
    assert summary["source"] == "images" and summary["fields"] == written
    assert "top1" not in summary  # no labels
    rows = read_rows(out)
    names = evaluated_class_names()
    for row in rows:
        stem = os.path.splitext(os.path.basename(row["input_files"]))[0]
        probabilities, _ = evaluated[tuple(stem.rsplit("_", 2))]  # plate, well, site
        assert abs(float(row["top1_prob"]) - probabilities.max()) < TOLERANCE
        assert row["top1_class"] == names[int(probabilities.argmax())]
        assert row["normalization"] == "none" and row["true_class"] == ""

    out = tmp_path / "records.csv"
    result = predict_cli(export_dir, data / "*.tfrecord", out)
    summary = summary_of(result)
    assert summary["source"] == "tfrecords" and summary["fields"] == 56
    rows = read_rows(out)
    assert_rows_match(rows, evaluated, 56)
    by_shard = {}
    for r in rows:  # the shard and the record's index in it
        by_shard.setdefault(r["input_files"], []).append(int(r["row"]))
    assert sorted(by_shard) == sorted(str(p) for p in data.glob("*.tfrecord"))
    assert all(indices == list(range(len(indices))) for indices in by_shard.values())
    class_names = evaluated_class_names()
    labels = np.array([class_names.index(m["class_name"]) for _, m in evaluated.values()])
    probabilities = np.array([p for p, _ in evaluated.values()])
    assert summary["top1"] == pytest.approx(np.mean(probabilities.argmax(1) == labels))
    assert summary["top1"] <= summary["top5"] and "per-treatment" in result.stderr


# --- bad input -------------------------------------------------------------------------

def test_bad_fields_are_named_or_skipped_and_counted(trained, tmp_path):
    root, _, export_dir = trained
    copy = tmp_path / "bbbc021"
    shutil.copytree(root, copy)
    with open(copy / metadata.IMAGE_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    def channel_files(row):
        return [copy / row[f"Image_PathName_{c}"] / row[f"Image_FileName_{c}"]
                for c in metadata.CHANNELS]
    corrupt = channel_files(rows[45])[1]
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated
    for path in channel_files(rows[7]):
        tifffile.imwrite(path, np.zeros((64, 64), np.uint16))  # wrong size
    eight_bit = channel_files(rows[10])[2]
    tifffile.imwrite(eight_bit, np.zeros((128, 128), np.uint8))  # wrong bit depth
    image_csv = copy / metadata.IMAGE_CSV
    out = tmp_path / "p.csv"
    out.write_text("an earlier run's predictions\n")

    failed = predict_cli(export_dir, image_csv, out, "--normalization=image", "--batch_size=4",
                         f"--features_out={tmp_path / 'f.parquet'}")
    # The first bad field comes after a batch went to both outputs' temporaries.
    assert_one_line_error(failed, f"{image_csv}:9", "size 64x64, expected 128x128")
    assert out.read_text() == "an earlier run's predictions\n"  # untouched, no Parquet
    assert sorted(os.listdir(tmp_path)) == ["bbbc021", "p.csv"]  # no temporaries left

    result = predict_cli(export_dir, image_csv, out, "--skip_bad", "--normalization=image",
                         f"--features_out={tmp_path / 'f.parquet'}")
    summary = summary_of(result)
    assert summary["skipped"] == 3 and summary["fields"] == 57
    assert summary["skipped_fields"] == [f"{image_csv}:{n}" for n in (9, 12, 47)]
    assert f"{image_csv}:47: {corrupt}: truncated" in result.stderr
    assert f"{image_csv}:9: {channel_files(rows[7])[0]}: size 64x64, expected 128x128" \
        in result.stderr
    assert f"{image_csv}:12: {eight_bit}: 8-bit pixels, expected 16-bit" in result.stderr
    assert "skipped 3 bad field(s)" in result.stderr
    assert len(read_rows(out)) == 57
    assert features_table.read_table(str(tmp_path / "f.parquet")).features.shape == (57, 512)


def test_bad_arguments_are_one_line_errors(trained, tmp_path):
    root, data, export_dir = trained
    out = tmp_path / "p.csv"
    no_plate = rewrite_csv(root / metadata.IMAGE_CSV, tmp_path / "no_plate.csv",
                           drop=("Image_Metadata_Plate_DAPI",))
    assert_one_line_error(predict_cli(export_dir, no_plate, out), str(no_plate),
                          "Image_Metadata_Plate_DAPI")
    assert_one_line_error(predict_cli(export_dir, tmp_path / "*.png", out), "no files match")
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(predict_cli(export_dir, tmp_path / "*.txt", out), "notes.txt",
                          "neither a PNG/TIFF image nor a TFRecord file")
    assert_one_line_error(predict_cli(data, data / "*.tfrecord", out), str(data),
                          "not an export of mcnn-keras")
    assert_one_line_error(predict_cli(export_dir, data / "*.tfrecord", out,
                                      "--normalization=plate"), "--normalization=plate")
    assert not out.exists()


def test_library_rejects_16_bit_images_and_wrong_sizes(trained, tmp_path):
    _, _, export_dir = trained
    tifffile.imwrite(tmp_path / "raw.tif", np.zeros((128, 128), np.uint16))
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(tmp_path / "small.png")
    for name, says in (("raw.tif", "uint16 pixels, expected 8-bit RGB"),
                       ("small.png", "size 64x128, expected 128x128")):
        with pytest.raises(ValueError, match=says):
            predict(PredictOptions(saved_model=str(export_dir), inputs=str(tmp_path / name),
                                   output_csv=str(tmp_path / "p.csv"), progress=False))
    assert not (tmp_path / "p.csv").exists()


# --- bf16 ------------------------------------------------------------------------------

def test_bfloat16_is_close_to_float32(trained, evaluated, tmp_path):
    _, data, export_dir = trained
    result = predict(PredictOptions(saved_model=str(export_dir),
                                    inputs=str(data / "val-*.tfrecord"),
                                    output_csv=str(tmp_path / "bf16.csv"),
                                    dtype="mixed_bfloat16", progress=False))
    assert result.summary["dtype"] == "mixed_bfloat16" and result.summary["fields"] == 14
    float32 = np.array([evaluated[(f.metadata["plate"], f.metadata["well"],
                                   f.metadata["site"])][0] for f in result.fields])
    np.testing.assert_allclose(result.probabilities, float32, atol=2e-2, rtol=0)
    assert np.abs(result.probabilities - float32).max() > 0  # it did run in bfloat16


# --- an export of the paper's Dataset B ---------------------------------------------

def test_a_dataset_b_export_classifies_the_centre_of_each_normalised_field(tmp_path):
    """Dataset B records are crops of normalised fields (182 -> 128 here, as
    1024 x 1280 -> 724): the raw fields are normalised at their own size with the
    training statistics, then cropped, as the converter wrote the validation crops."""
    root, data, run = tmp_path / "bbbc021", tmp_path / "data", tmp_path / "run"
    fixture.write_fixture(str(root), 182, 182, plates=1, sites=2, compounds_per_class=1,
                          seed=0, progress=False)
    convert.convert(options.ConvertOptions(
        bbbc021_dir=str(root), output_dir=str(data), height=182, width=182, split="random",
        val_fraction=0.25, num_shards=1, dataset="B", rotation_step=90), progress=False)
    training.train(config.TrainConfig.from_flat(dict(
        train_files=str(data / "train-*.tfrecord"), val_files=str(data / "val-*.tfrecord"),
        model_dir=str(run), height=128, width=128, batch_size=8, epochs=1, steps_per_epoch=2,
        warmup_epochs=0.5, base_lr=0.01, verbose=0, tensorboard=False, seed=1)))
    probabilities, _, meta = evaluation.predict_files(
        evaluation.saved_model_predictor(str(run / "export")),
        dataset.list_files(str(data / "val-*.tfrecord")))
    expected = {(m["plate"], m["well"], m["site"]): p for p, m in zip(probabilities, meta)}
    result = predict(PredictOptions(saved_model=str(run / "export"),
                                    inputs=str(root / metadata.IMAGE_CSV),
                                    output_csv=str(tmp_path / "p.csv"), progress=False))
    matched = [(p, expected[(f.metadata["plate"], f.metadata["well"], f.metadata["site"])])
               for f, p in zip(result.fields, result.probabilities)
               if (f.metadata["plate"], f.metadata["well"], f.metadata["site"]) in expected]
    assert len(matched) == len(expected) > 0
    for got, want in matched:
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)
    # Statistics of its own need fields of the export's size: --resize says how.
    with pytest.raises(ValueError, match="size 182x182, expected 128x128"):
        predict(PredictOptions(saved_model=str(run / "export"),
                               inputs=str(root / metadata.IMAGE_CSV),
                               output_csv=str(tmp_path / "p.csv"), normalization="plate",
                               progress=False))
    cropped = predict(PredictOptions(saved_model=str(run / "export"),
                                     inputs=str(root / metadata.IMAGE_CSV),
                                     output_csv=str(tmp_path / "p.csv"), normalization="plate",
                                     resize="crop", progress=False))
    assert cropped.summary["fields"] == 30


def _fill(directory):
    """Fills the file system of `directory` up to the last byte."""
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


@contextlib.contextmanager
def _full_disk(directory):
    """A tmpfs mounted at `directory` (skip where mounting is not allowed)."""
    directory.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(directory)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def _size_limit(nbytes):
    """preexec_fn: writes past `nbytes` fail with EFBIG instead of killing the process."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


@pytest.mark.parametrize("output", ["output_csv", "features_out"])
def test_a_full_disk_is_one_line_naming_the_output_and_keeps_the_old_one(trained, tmp_path,
                                                                         output):
    root, _, export_dir = trained
    with _full_disk(tmp_path / "full") as full:
        target = full / ("p.csv" if output == "output_csv" else "f.parquet")
        target.write_text("the previous run's output\n")
        _fill(full)
        flags = [f"--features_out={target}"] if output == "features_out" else []
        csv_path = target if output == "output_csv" else tmp_path / "p.csv"
        result = predict_cli(export_dir, root / metadata.IMAGE_CSV, csv_path, *flags)
        assert_one_line_error(result, str(target), "No space left on device")
        assert target.read_text() == "the previous run's output\n"
        assert sorted(p.name for p in full.iterdir()) == sorted(["filler", target.name])


def test_a_read_only_output_directory_is_refused_before_any_work(trained, tmp_path):
    # As root os.access says a read-only mount is writable; the check tries a write.
    root, _, export_dir = trained
    with _full_disk(tmp_path / "ro") as ro:
        if subprocess.run(["mount", "-o", "remount,ro", str(ro)],
                          capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        result = predict_cli(export_dir, root / metadata.IMAGE_CSV, ro / "p.csv")
        assert_one_line_error(result, f"--output_csv={ro / 'p.csv'}", "Read-only file system")
        assert "fields/s" not in result.stderr and list(ro.iterdir()) == []


def test_a_file_size_limit_is_one_line_naming_the_output(trained, tmp_path):
    root, _, export_dir = trained
    out = tmp_path / "p.csv"
    command = [sys.executable, "-m", "mcnn_keras.cli.predict", f"--saved_model={export_dir}",
               f"--inputs={root / metadata.IMAGE_CSV}", f"--output_csv={out}", "--noprogress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            preexec_fn=_size_limit(64))
    assert_one_line_error(result, str(out), "File too large")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


KILLED_MID_WRITE = """
import os, signal, sys
from mcnn_keras.io import features_table
write = features_table.FeaturesWriter.write
def killed(self, *args):  # both outputs' temporaries exist now: kill -9 mid-write
    write(self, *args)
    os.kill(os.getpid(), signal.SIGKILL)
features_table.FeaturesWriter.write = killed
sys.argv = ["mcnn-predict", *sys.argv[1:]]
from mcnn_keras.cli import predict
predict.run()
"""


def test_a_rerun_removes_the_temporaries_of_killed_predictions_and_nothing_else(trained,
                                                                                tmp_path):
    _, data, export_dir = trained
    out = tmp_path / "out"
    out.mkdir()
    users = {"notes.txt": "mine", ".p.csv.tmp-notes.csv": "mine too", "other.csv": "x"}
    for name, text in users.items():
        (out / name).write_text(text)
    flags = [f"--saved_model={export_dir}", f"--inputs={data}/val-*.tfrecord",
             f"--output_csv={out / 'p.csv'}", f"--features_out={out / 'f.parquet'}",
             "--noprogress", "--batch_size=2"]
    for _ in range(2):
        killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, *flags],
                                capture_output=True, text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # Each run removes what the one before left: one temporary per output remains.
    left = sorted(n for n in os.listdir(out) if n not in users)
    assert [n.split(".tmp-")[0] for n in left] == [".f.parquet", ".p.csv"], left
    result = run_binary("mcnn_keras.cli.predict", *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(out)) == sorted([*users, "p.csv", "f.parquet"])
    assert all((out / n).read_text() == text for n, text in users.items())
