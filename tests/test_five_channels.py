"""Five stains end to end on records: a manifest's channel list and classes
reach the model, the run's flags, the export and mcnn-predict, which refuses
records with another channel count in one line naming both."""

import json

import pytest

from cli_util import assert_one_line_error, run_binary
from data_util import write_bars_dataset
from mcnn_keras.data import manifest
from mcnn_keras.export import info as export_info
from mcnn_keras.train import config, run_dir, training

STAINS = ["DNA", "ER", "RNA", "AGP", "Mito"]
CLASSES = [f"compound{i}" for i in range(13)]


@pytest.fixture(scope="module")
def five_stain_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("cp")
    write_bars_dataset(data, "train", 32, 2, seed=1, channels=5)
    write_bars_dataset(data, "val", 13, 1, seed=2, channels=5)
    (data / manifest.MANIFEST).write_text(json.dumps(
        {"image_size": [128, 128], "channels": STAINS, "classes": CLASSES}))
    model_dir = tmp_path_factory.mktemp("run")
    # Only files, model_dir and schedule: size, channels and classes come from the data.
    training.train(config.TrainConfig.from_flat({
        "train_files": f"{data}/train-*.tfrecord", "val_files": f"{data}/val-*.tfrecord",
        "model_dir": str(model_dir), "batch_size": 8, "epochs": 1, "verbose": 0,
        "tensorboard": False}))
    return data, model_dir


def test_the_run_and_its_export_take_five_stains_named_by_the_manifest(five_stain_run):
    _, model_dir = five_stain_run
    data = run_dir.RunDir(str(model_dir)).load_config().data
    assert (data.height, data.width, data.channels, data.num_classes) == (128, 128, 5, 13)
    assert data.class_name_list() == CLASSES
    info = export_info.read_export_info(str(model_dir / "export"))
    assert info["channels"] == STAINS and info["class_names"] == CLASSES
    assert info["input"]["shape"] == [None, 128, 128, 5]
    assert info["signatures"]["serving_default"]["inputs"]["images"] == "uint8 [N, 128, 128, 5]"
    assert export_info.load_model(str(model_dir / "export")).input_shape == (None, 128, 128, 5)


def test_predict_classifies_five_stain_records_and_refuses_three(five_stain_run, tmp_path):
    data, model_dir = five_stain_run
    out = tmp_path / "p.csv"
    result = run_binary("mcnn_keras.cli.predict", f"--saved_model={model_dir}/export",
                        f"--inputs={data}/val-*.tfrecord", f"--output_csv={out}",
                        "--noprogress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(out.read_text().splitlines()) == 1 + 13

    three = tmp_path / "three"
    three.mkdir()
    write_bars_dataset(three, "val", 4, 1, channels=3)
    result = run_binary("mcnn_keras.cli.predict", f"--saved_model={model_dir}/export",
                        f"--inputs={three}/val-*.tfrecord", f"--output_csv={tmp_path}/q.csv",
                        "--noprogress")
    assert_one_line_error(result, "val-00000-of-00001.tfrecord: record 0: 3 channel(s)",
                          "was trained on 5 (DNA, ER, RNA, AGP, Mito)")
    assert not (tmp_path / "q.csv").exists()


def test_onnx_takes_five_stains_and_names_them(five_stain_run):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    import numpy as np  # pylint: disable=import-outside-toplevel
    import onnx  # pylint: disable=import-outside-toplevel
    _, model_dir = five_stain_run
    result = run_binary("mcnn_keras.cli.export", f"--model_dir={model_dir}", "--format=onnx",
                        f"--export_dir={model_dir}/onnx_export")
    assert result.returncode == 0, result.stderr[-3000:]
    path = model_dir / "onnx_export" / "model.onnx"
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["channels"]) == STAINS
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [128, 128, 5]
    images = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 5), dtype=np.uint8)
    probabilities = session.run(["probabilities"], {"images": images})[0]
    assert probabilities.shape == (2, 13)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
