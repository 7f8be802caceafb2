"""Exports a trained M-CNN as a SavedModel for serving.

The `serving_default` signature takes uint8 images [N, H, W, 3] (the raw
pixels, as stored in the TFRecords) and returns float32 `probabilities`
[N, num_classes], int64 `class_ids` [N] and string `class_names` [N].
The export is written to a temporary directory and swapped in atomically, so
an existing export survives a failed one.

Usage:

    export_saved_model(model, "runs/demo/export", MOA_CLASSES)
    served = tf.saved_model.load("runs/demo/export")
    out = served.signatures["serving_default"](images=uint8_batch)
"""

import keras
import tensorflow as tf

from mcnn_keras import atomic
from mcnn_keras.model import build_model


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
    """Writes the serving SavedModel of `model` to `path` (atomically)."""
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
    return path
