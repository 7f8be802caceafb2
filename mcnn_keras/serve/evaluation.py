"""Evaluates a trained M-CNN on TFRecord shards.

Works from a training run's checkpoint or from an exported SavedModel and
reports image-level top-1 / top-5, the confusion matrix (CSV and PNG),
per-class recall and, when the records carry compound and concentration
metadata, the field's per-treatment accuracy (median of softmax over fields of
view, then over replicates, then argmax).

Usage:

    predictor = checkpoint_predictor("runs/demo")          # or saved_model_predictor
    report = evaluate(predictor, files, "runs/demo/eval", class_names)
    print(report["top1"], report["per_treatment"]["accuracy"])
"""

import csv
import io
import os

import numpy as np
import tensorflow as tf

from mcnn_keras.io import atomic
from mcnn_keras.data import dataset
from mcnn_keras.io import plots
from mcnn_keras.io import records
from mcnn_keras.train import restore, run_dir
from mcnn_keras.io import storage
from mcnn_keras.serve import treatments


class Predictor:
    """Maps uint8 image batches to class probabilities; knows its input size."""

    def __init__(self, predict_fn, height, width, num_classes, source):
        self.predict_fn, self.source = predict_fn, source
        self.height, self.width, self.num_classes = height, width, num_classes

    def __call__(self, images):
        return np.asarray(self.predict_fn(images))


def checkpoint_predictor(model_dir, checkpoint=None):
    """A predictor from the latest (or given) checkpoint of a training run."""
    model, cfg, path = restore.restore_model(run_dir.RunDir(model_dir), checkpoint)
    predict = tf.function(lambda x: tf.nn.softmax(model(x, training=False), axis=-1))
    return Predictor(predict, cfg.data.height, cfg.data.width, cfg.data.num_classes, path)


def saved_model_predictor(path):
    """A predictor from an exported SavedModel's serving_default signature.

    A missing path is a FileNotFoundError, anything that is not an mcnn-export
    SavedModel (garbage, no `images` input, ...) a ValueError; both name `path`.
    """
    if not storage.is_remote(path) and not os.path.isdir(path):
        if os.path.exists(path):
            raise ValueError(f"{path} is a file, not a SavedModel directory")
        raise FileNotFoundError(f"{path}: no such SavedModel directory")
    try:  # TensorFlow's own errors for a bad SavedModel are of many types
        serving = tf.saved_model.load(path).signatures["serving_default"]
        _, height, width, _ = serving.structured_input_signature[1]["images"].shape
        num_classes = serving.structured_outputs["probabilities"].shape[-1]
    except (OSError, KeyError, ValueError, TypeError, tf.errors.OpError) as e:
        reason = f"no {e}" if isinstance(e, KeyError) else str(e).strip().splitlines()[0]
        raise ValueError(f"{path} is not a SavedModel written by mcnn-export "
                         f"({reason})") from None
    return Predictor(lambda x: serving(images=x)["probabilities"], height, width,
                     num_classes, path)


def predict_files(predictor, files, batch_size=32):
    """Returns (probabilities [N, C], labels [N], metadata list) over `files`."""
    ds = dataset.eval_dataset(files, predictor.height, predictor.width, batch_size,
                              predictor.num_classes, with_metadata=True)
    probabilities, labels, metadata = [], [], []
    for images, batch_labels, batch_metadata in dataset.named_errors(ds, files):  # one pass
        probabilities.append(predictor(images))
        labels.append(batch_labels.numpy())
        columns = {key: batch_metadata[key].numpy() for key in records.METADATA_KEYS}
        metadata += [{key: columns[key][i].decode("utf-8") for key in records.METADATA_KEYS}
                     for i in range(len(columns[records.METADATA_KEYS[0]]))]
    if not probabilities:
        raise ValueError(f"no records in {files}")
    return np.concatenate(probabilities), np.concatenate(labels), metadata


def confusion_matrix(labels, predictions, num_classes):
    """Counts [true, predicted]."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return confusion


def _csv_text(header, rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def evaluate(predictor, files, output_dir, class_names, batch_size=32,
             treatment_exclude=()):
    """Evaluates, writes the reports to `output_dir`, returns the report dict.

    `treatment_exclude`: class names left out of the per-treatment accuracy,
    e.g. ("DMSO",) for the published 12-class protocol.
    """
    class_names = list(class_names)[:predictor.num_classes]
    probabilities, labels, metadata = predict_files(predictor, files, batch_size)
    predictions = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predictions, predictor.num_classes)
    report = {
        "source": predictor.source,
        "files": len(files),
        "images": int(len(labels)),
        **treatments.image_accuracy(probabilities, labels),
        "per_class_recall": dict(zip(class_names,
                                     treatments.per_class_recall(confusion))),
    }
    if any(m["compound"] for m in metadata):
        report["per_treatment"] = treatments.per_treatment_accuracy(
            probabilities, labels, metadata, class_names, exclude=tuple(treatment_exclude))

    tf.io.gfile.makedirs(output_dir)
    atomic.write_text_atomic(
        os.path.join(output_dir, "confusion_matrix.csv"),
        _csv_text(["true \\ predicted"] + class_names,
                  [[name] + row.tolist() for name, row in zip(class_names, confusion)]))
    plots.plot_confusion_matrix(
        confusion, class_names, os.path.join(output_dir, "confusion_matrix.png"),
        title=f"top-1 {report['top1']:.1%} on {report['images']} images")
    atomic.write_text_atomic(
        os.path.join(output_dir, "predictions.csv"),
        _csv_text(["label", "predicted"] + list(records.METADATA_KEYS) + class_names,
                  [[int(l), int(p)] + [m[k] for k in records.METADATA_KEYS]
                   + [f"{v:.6f}" for v in probs]
                   for l, p, m, probs in zip(labels, predictions, metadata, probabilities)]))
    atomic.write_json_atomic(os.path.join(output_dir, "metrics.json"), report)
    return report
