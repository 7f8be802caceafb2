"""ONNX export of the M-CNN: `model.onnx` beside the SavedModel in an export.

Needs the optional extra `onnx` (pip install 'mcnn-keras[onnx]': tf2onnx,
onnx, onnxruntime); without it `require_onnx` fails in one line before any
work. The graph is converted from the export's own `features` function
(signatures.serving_functions), so it takes the same uint8 `images` [N, H, W, 3]
(/255 and padding inside) and returns float32 `features` [N, 512], float32
`probabilities` [N, C] and int64 `class_ids` [N]. Class names, input size and
channel order are in the model's metadata_props (and in mcnn_export.json).
The file is written atomically: an existing model.onnx is replaced only by a
complete new one.

Usage (usually through `mcnn-export --format=onnx` or
`export.export_saved_model(..., onnx=True)`):

    write_onnx(model, "runs/demo/export/model.onnx", MOA_CLASSES)
    session = onnxruntime.InferenceSession("runs/demo/export/model.onnx")
    probabilities = session.run(["probabilities"], {"images": uint8_batch})[0]
"""

import importlib.util
import json
import logging
import os

from mcnn_keras.io import atomic
from mcnn_keras.model import topology
from mcnn_keras.export import info
from mcnn_keras.export import signatures

ONNX_FILE = "model.onnx"
EXTRA = "onnx"
PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
# Opset 17 (ONNX 1.12, 2022): every onnxruntime since 1.12 runs it.
OPSET = 17
# How far onnxruntime may be from TensorFlow on the probe batch, relative to
# the largest output value (at least 1).
TOLERANCE = 1e-4


def missing_packages():
    """The packages of the `onnx` extra that cannot be imported (without importing them)."""
    missing = []
    for name in PACKAGES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


def require_onnx():
    """Raises ValueError (one line) unless the `onnx` extra is installed."""
    missing = missing_packages()
    if missing:
        raise ValueError(f"ONNX export needs the optional extra {EXTRA!r} "
                         f"({', '.join(missing)} not installed): "
                         f"pip install 'mcnn-keras[{EXTRA}]'")


def _check(proto, function, height, width, channels, path):
    """Raises ValueError unless onnxruntime runs `proto` and matches `function`
    on two random images: tf2onnx can log a node it failed on and go on."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import onnxruntime  # pylint: disable=import-outside-toplevel
    onnxruntime.set_default_logger_severity(3)  # errors only: they become our ValueError
    images = np.random.default_rng(0).integers(0, 256, (2, height, width, channels),
                                                  dtype=np.uint8)
    expected = {k: v.numpy() for k, v in function(images).items()}
    try:
        session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        got = dict(zip(names, session.run(names, {"images": images})))
    except Exception as e:  # pylint: disable=broad-except  # onnxruntime's own error types
        raise ValueError(f"{path}: the converted model does not run in onnxruntime "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    for name, value in expected.items():
        if name not in got or got[name].shape != value.shape:
            raise ValueError(f"{path}: the converted model has no output {name} of shape "
                             f"{value.shape}")
        error = float(np.abs(got[name].astype(np.float64) - value).max())
        if not error <= TOLERANCE * max(1.0, float(np.abs(value).max())):
            raise ValueError(f"{path}: ONNX output {name} differs from TensorFlow's by "
                             f"{error:.3g}")


def write_onnx(model, path, class_names, channels=None, opset=OPSET):
    """Converts `model` (an M-CNN, computed in float32) to ONNX at `path`,
    checks it in onnxruntime and writes it atomically; returns the "onnx"
    record of mcnn_export.json."""
    require_onnx()
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import onnx  # pylint: disable=import-outside-toplevel
    import tf2onnx  # pylint: disable=import-outside-toplevel
    tf2onnx.logging.set_level(logging.ERROR)  # it logs every rewrite at INFO
    if model.compute_dtype != "float32":
        model = signatures.float32_copy(model)  # pylint: disable=protected-access
    _, height, width, count = model.input_shape
    spec = (tf.TensorSpec([None, height, width, count], tf.uint8, name="images"),)
    function = tf.function(signatures.serving_functions(model, class_names)[signatures.FEATURES],
                           input_signature=spec)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=opset)
    except Exception as e:  # pylint: disable=broad-except  # tf2onnx raises many kinds
        raise ValueError(f"{path}: ONNX conversion failed ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    _check(proto, function, height, width, count, path)
    metadata = {"class_names": json.dumps(list(class_names)), "height": str(height),
                "width": str(width),
                "channels": json.dumps(list(channels or info.default_channels(count))),
                "producer": "mcnn-keras"}
    onnx.helper.set_model_props(proto, metadata)
    with atomic.atomic_file(path) as tmp:
        onnx.save_model(proto, tmp)
    return {"file": os.path.basename(path), "opset": opset,
            "inputs": {"images": f"uint8 [N, {height}, {width}, {count}]"},
            "outputs": {"features": f"float32 [N, {topology.DENSE_UNITS}]",
                        "probabilities": "float32 [N, num_classes]",
                        "class_ids": "int64 [N]"},
            "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__}
