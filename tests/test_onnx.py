"""ONNX export (the `onnx` extra): onnxruntime serves what the SavedModel serves."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mcnn_keras.export import info as export_info
from mcnn_keras.export import onnx_export as export_onnx
from mcnn_keras.data.classes import MOA_CLASSES
from mcnn_keras.train.restore import restore_model
from mcnn_keras.train.run_dir import RunDir
from cli_util import assert_one_line_error, run_binary, tree_digest
from data_util import one_epoch_run

pytestmark = pytest.mark.slow

# The binary with the extra's packages hidden, as in an install without [onnx].
WITHOUT_EXTRA = """
import sys
for name in ("tf2onnx", "onnx", "onnxruntime"):
    sys.modules[name] = None  # `import name` fails, find_spec finds nothing
from mcnn_keras.cli import export
from mcnn_keras.export import info as export_info
sys.argv = ["mcnn-export", *sys.argv[1:]]
export.run()
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A briefly trained 128 x 128 run (its export is written at the end)."""
    return one_epoch_run(tmp_path_factory, 16, 8, train_shards=1)


def test_without_the_extra_the_binary_fails_in_one_line_before_any_work(run_dir):
    before = tree_digest(run_dir)
    result = subprocess.run([sys.executable, "-c", WITHOUT_EXTRA, f"--model_dir={run_dir}",
                             "--format=onnx"], capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, "--format=onnx: ONNX export needs the optional extra 'onnx'",
                          "pip install 'mcnn-keras[onnx]'")
    assert tree_digest(run_dir) == before  # nothing restored, nothing written


def test_mcnn_export_format_onnx_matches_the_saved_model_in_onnxruntime(run_dir):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    result = run_binary("mcnn_keras.cli.export", f"--model_dir={run_dir}", "--format=onnx")
    assert result.returncode == 0, result.stderr[-3000:]
    path = run_dir / "export" / export_onnx.ONNX_FILE
    info = export_info.read_export_info(run_dir / "export")
    assert info["onnx"]["file"] == export_onnx.ONNX_FILE
    assert info["onnx"]["opset"] == export_onnx.OPSET

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    assert (image_input.name, image_input.type) == ("images", "tensor(uint8)")
    assert image_input.shape[1:] == [128, 128, 3]
    props = session.get_modelmeta().custom_metadata_map
    assert json.loads(props["class_names"]) == list(MOA_CLASSES)

    images = np.random.default_rng(5).integers(0, 256, (5, 128, 128, 3), dtype=np.uint8)
    names = ["probabilities", "features", "class_ids"]
    got = dict(zip(names, session.run(names, {"images": images})))
    served = tf.saved_model.load(str(run_dir / "export")).signatures["features"](
        images=tf.constant(images))
    np.testing.assert_allclose(got["probabilities"], served["probabilities"].numpy(),
                               rtol=0, atol=1e-4)
    scale = max(1.0, float(np.abs(served["features"].numpy()).max()))
    np.testing.assert_allclose(got["features"], served["features"].numpy(), rtol=0,
                               atol=1e-4 * scale)
    assert got["features"].shape == (5, 512) and got["features"].dtype == np.float32
    np.testing.assert_array_equal(got["class_ids"], served["class_ids"].numpy())


def test_a_failed_conversion_keeps_the_existing_model_onnx(run_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    model, _, _ = restore_model(RunDir(str(run_dir)))
    path = tmp_path / export_onnx.ONNX_FILE
    export_onnx.write_onnx(model, str(path), MOA_CLASSES)
    before = path.read_bytes()
    # Opset 5 has no Cast from uint8 as tf2onnx writes it: tf2onnx logs the node and
    # goes on; the check in onnxruntime catches it.
    with pytest.raises(ValueError, match=f"{path}: the converted model does not run"):
        export_onnx.write_onnx(model, str(path), MOA_CLASSES, opset=5)
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]
