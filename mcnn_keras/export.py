"""Exports a trained M-CNN as a SavedModel for serving.

The `serving_default` signature takes uint8 images [N, H, W, 3] (the raw
pixels, as stored in the TFRecords) and returns float32 `probabilities`
[N, num_classes], int64 `class_ids` [N] and string `class_names` [N].
The export is written to a temporary directory and swapped in atomically, so
an existing export survives a failed one.

Every export holds `mcnn_export.json` (format version, class names, input
size): only a directory with it (or the `export/` of a run directory, written
before the marker existed) is ever replaced; any other existing path is
refused before any work, so nothing of the user's is moved.

Usage:

    check_export_dir("runs/demo/export")     # ValueError unless free or ours
    export_saved_model(model, "runs/demo/export", MOA_CLASSES)
    served = tf.saved_model.load("runs/demo/export")
    out = served.signatures["serving_default"](images=uint8_batch)
"""

import os

import keras
import tensorflow as tf

from mcnn_keras import atomic, run_dir
from mcnn_keras.model import build_model

MARKER = "mcnn_export.json"
FORMAT_VERSION = 1


def _is_legacy_run_export(path):
    """A run directory's own export/ from before the marker: ours too."""
    path = os.path.normpath(path)
    return (os.path.basename(path) == run_dir.EXPORT
            and os.path.exists(os.path.join(path, "saved_model.pb"))
            and os.path.exists(os.path.join(os.path.dirname(path), run_dir.FLAGS_JSON)))


def check_export_dir(path):
    """Raises ValueError unless an export may be written to `path`: a missing
    path, an empty directory or an export this project wrote (`MARKER`)."""
    if "://" in str(path) or not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        raise ValueError(f"{path} exists and is not a directory: not replacing it with "
                         f"an export")
    if (os.path.exists(os.path.join(path, MARKER)) or not os.listdir(path)
            or _is_legacy_run_export(path)):
        return
    raise ValueError(f"{path} exists and is not an export of mcnn-keras (it has no "
                     f"{MARKER}): not replacing it; move it away or export elsewhere")


def _float32_copy(model):
    """A plain float32 copy of `model` outside any distribution strategy.

    Serving wants float32 math on any CPU; and a fresh model keeps the export
    free of distributed-variable wrappers. The weights are float32 in every
    policy, so the copy is exact.
    """
    _, height, width, _ = model.input_shape
    copy = build_model(height, width, model.output_shape[-1], dtype_policy="float32")
    copy.set_weights(model.get_weights())
    return copy


def export_saved_model(model, path, class_names):
    """Writes the serving SavedModel of `model` to `path` (atomically), with
    its `MARKER`; refuses a `path` that is not ours (`check_export_dir`)."""
    check_export_dir(path)
    serving_model = _float32_copy(model)
    _, height, width, _ = serving_model.input_shape
    names = tf.constant(list(class_names))

    archive = keras.export.ExportArchive()
    archive.track(serving_model)

    def serve(images):
        probabilities = tf.nn.softmax(serving_model(images, training=False), axis=-1)
        class_ids = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "class_ids": class_ids,
                "class_names": tf.gather(names, class_ids)}

    archive.add_endpoint(
        "serving_default", serve,
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")])
    with atomic.atomic_directory(path) as tmp:
        archive.write_out(tmp, verbose=False)
        atomic.write_json_atomic(os.path.join(tmp, MARKER), {
            "format_version": FORMAT_VERSION, "class_names": list(class_names),
            "height": height, "width": width, "num_classes": serving_model.output_shape[-1],
            "input": "uint8 images [N, height, width, 3]"})
    return path
