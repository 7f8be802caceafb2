"""Fixture -> converter -> train (128 x 128) -> evaluate, end to end."""

import json
import os

import pytest

from mcnn_keras.data import classes
from mcnn_keras.train import config
from mcnn_keras.data.bbbc021 import convert, fixture
from mcnn_keras.data.bbbc021 import options


@pytest.mark.slow
def test_fixture_convert_train_evaluate(tmp_path):
    from mcnn_keras.serve import evaluation  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import training  # pylint: disable=import-outside-toplevel
    root = tmp_path / "bbbc021"
    summary = fixture.write_fixture(str(root), 128, 128, plates=2, sites=2,
                                    compounds_per_class=1, seed=0, progress=False)
    data = tmp_path / "data"
    manifest = convert.convert(options.ConvertOptions(
        str(root), str(data), height=128, width=128, split="random", val_fraction=0.25,
        num_shards=2), progress=False)
    assert manifest["counts"]["per_class"] == summary["labelled_fields"]

    run = tmp_path / "run"
    result = training.train(config.TrainConfig.from_flat(dict(
        train_files=str(data / "train-*.tfrecord"), val_files=str(data / "val-*.tfrecord"),
        model_dir=str(run), height=128, width=128, batch_size=8, epochs=1,
        warmup_epochs=0.5, base_lr=0.01, verbose=0, tensorboard=False, seed=1)))
    assert result is not None

    val_files = sorted(str(data / f) for f in manifest["files"]["val"])
    report = evaluation.evaluate(evaluation.checkpoint_predictor(str(run)), val_files,
                                 str(tmp_path / "eval"), classes.MOA_CLASSES)
    assert report["images"] == manifest["counts"]["per_split"]["val"]["records"]
    per_treatment = report["per_treatment"]
    val_treatments = {(t["compound"], t["concentration"]) for t in per_treatment["treatments"]}
    assert per_treatment["num_treatments"] == len(val_treatments) > 0
    rows = per_treatment["treatments"]
    assert per_treatment["num_correct"] == sum(t["correct"] for t in rows)
    assert per_treatment["accuracy"] == pytest.approx(per_treatment["num_correct"] / len(rows))
    assert all(t["correct"] == (t["predicted"] == t["label"]) for t in rows)
    for name in ("confusion_matrix.csv", "confusion_matrix.png", "metrics.json"):
        assert os.path.exists(tmp_path / "eval" / name)
    with open(tmp_path / "eval" / "metrics.json") as f:
        written = json.load(f)
    assert written["images"] == report["images"]
