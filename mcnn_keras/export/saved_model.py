"""Exports a trained M-CNN for serving, with what inference on raw data needs.

An export directory holds:

- the SavedModel: `serving_default` takes uint8 `images` [N, H, W, 3] (the
  raw pixels, as in the TFRecords; /255 and the 724 -> 768 zero padding are
  inside the model) and returns float32 `probabilities` [N, C], int64
  `class_ids` [N], string `class_names` [N]; `features` takes the same and
  returns float32 `features` [N, 512] (the ReLU output of the first dense
  layer, `ip0`), `probabilities` and `class_ids`;
- `mcnn_export.json` (format 2; format 1 is still read): class names, input
  size, the padded size the network runs at, channel order, pixel scaling,
  and the normalisation the training data got;
- `preprocessing/`: the converter's `normalization.json` + `illumination.npz`
  (per plate x channel illumination maps and intensity percentiles,
  data/conversion/normalization.py), copied from beside the training shards when they
  came from the converter; else `"normalization": null` and the reason (e.g.
  synthetic shards, whose pixels had no correction);
- with `onnx=True`, `model.onnx` (onnx_export.py, the `onnx` extra).

Normalisation of raw fields at inference (`mcnn-predict --normalization`, in
the JSON as "normalization_modes"): `training` applies the saved statistics
of the field's plate (a plate that was not in training is an error naming
it); `plate` computes the same statistics (illumination map + percentiles) on
the fly from all input fields of each plate, the converter's first pass;
`image` uses one field's own percentiles with a flat illumination map.
Inputs that are already uint8 (8-bit PNGs, TFRecords) get none.

The export is built in a temporary directory and swapped in atomically, so an
existing export (its model.onnx too) survives a failed one. Only a directory
with the marker (or a run directory's `export/` from before the marker) is
ever replaced; any other existing path is refused before any work.

Usage:

    export_saved_model(model, "runs/demo/export", MOA_CLASSES,
                       train_files="data/train-*.tfrecord")   # onnx=True: + model.onnx
    info = read_export_info("runs/demo/export")   # {"height": 128, "channels": [...], ...}
    stats = load_statistics("runs/demo/export")   # {plate: PlateStats} or None
    model = load_model("runs/demo/export", dtype_policy="mixed_bfloat16")
    served = tf.saved_model.load("runs/demo/export")
    out = served.signatures["features"](images=uint8_batch)   # out["features"]: [N, 512]
"""

import os
import shutil

from absl import logging

from mcnn_keras.io import atomic
from mcnn_keras.io import storage

from mcnn_keras.export.info import MARKER, PREPROCESSING, build_info
from mcnn_keras.export.signatures import FEATURES, SERVING, float32_copy, serving_functions
from mcnn_keras.export.statistics import (copy_statistics, find_training_statistics,
                                          training_channels)


# A run directory's export/ and configuration file (`train.run_dir.EXPORT` and
# `FLAGS_JSON`, which sits above this floor; tests/test_export checks they agree).
RUN_EXPORT, RUN_FLAGS_JSON = "export", "flags.json"


def _is_legacy_run_export(path):
    """A run directory's own export/ from before the marker: ours too."""
    path = os.path.normpath(path)
    return (os.path.basename(path) == RUN_EXPORT
            and os.path.exists(os.path.join(path, "saved_model.pb"))
            and os.path.exists(os.path.join(os.path.dirname(path), RUN_FLAGS_JSON)))


def check_export_dir(path):
    """Raises ValueError unless an export may be written to `path`: a missing
    path, an empty directory or an export this project wrote (`MARKER`)."""
    if storage.is_remote(path) or not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        raise ValueError(f"{path} exists and is not a directory: not replacing it with "
                         f"an export")
    if (os.path.exists(os.path.join(path, MARKER)) or not os.listdir(path)
            or _is_legacy_run_export(path)):
        return
    raise ValueError(f"{path} exists and is not an export of mcnn-keras (it has no "
                     f"{MARKER}): not replacing it; move it away or export elsewhere")


# --- The training data's normalisation -------------------------------------------


# --- Writing ---------------------------------------------------------------------


def _saved_module(model, class_names):
    """A tf.Module holding the model's variables once and the two signatures.

    Not keras.export.ExportArchive: on TensorFlow 2.21 it saves every weight
    twice (as the Keras variable and as its tf.Variable), 333 MB instead of
    170 MB at 1024 x 1280.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    _, height, width, channels = model.input_shape
    spec = tf.TensorSpec([None, height, width, channels], tf.uint8, name="images")
    module = tf.Module()
    # The tf.Variables under the Keras ones, each once (names: "<layer>/kernel").
    module.model_variables = [w.value for w in model.weights]
    for name, function in serving_functions(model, class_names).items():
        setattr(module, name, tf.function(function, input_signature=[spec]))
    return module


def export_saved_model(model, path, class_names, train_files=None, onnx=False):
    """Writes the export of `model` to `path` (atomically): SavedModel, `MARKER`,
    the training data's statistics (found from `train_files`, the run's
    comma-separated training globs) and with `onnx` also model.onnx. Refuses a
    `path` that is not ours (`check_export_dir`). Returns the info written."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    check_export_dir(path)
    # The staging directories (and moved-aside old versions) of killed exports.
    atomic.remove_temporaries(os.path.dirname(os.path.abspath(path)),
                              [os.path.basename(os.path.abspath(path))])
    if onnx:
        from mcnn_keras.export import onnx_export as export_onnx  # pylint: disable=import-outside-toplevel
        export_onnx.require_onnx()
    serving_model = float32_copy(model)
    _, height, width, channels = serving_model.input_shape
    if len(class_names) != serving_model.output_shape[-1]:
        raise ValueError(f"{len(class_names)} class names for a model with "
                         f"{serving_model.output_shape[-1]} outputs")
    shard_dirs, source, why_not = find_training_statistics(train_files)

    module = _saved_module(serving_model, class_names)
    with atomic.atomic_directory(path) as tmp:
        tf.saved_model.save(module, tmp, signatures={
            name: getattr(module, name) for name in (SERVING, FEATURES)})
        normalization = None
        if source:
            try:
                normalization = copy_statistics(source, os.path.join(tmp, PREPROCESSING))
            except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
                # Not fatal at the end of a training run: recorded, and logged.
                shutil.rmtree(os.path.join(tmp, PREPROCESSING), ignore_errors=True)
                why_not = f"{source}: unreadable statistics ({str(e).splitlines()[0]})"
        if why_not:
            logging.warning("export %s: no normalisation recorded: %s", path, why_not)
        info = build_info(height, width, class_names,
                          *training_channels(source, shard_dirs, channels), normalization,
                          why_not)
        if onnx:
            info["onnx"] = export_onnx.write_onnx(
                serving_model, os.path.join(tmp, export_onnx.ONNX_FILE), class_names,
                channels=info["channels"])
        atomic.write_json_atomic(os.path.join(tmp, MARKER), info)
    return info


# --- Reading ---------------------------------------------------------------------


