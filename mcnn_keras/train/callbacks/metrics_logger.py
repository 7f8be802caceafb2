"""Appends one JSON object per epoch to a metrics file (JSON lines).

Every line holds the epoch (1-based), the Keras logs of that epoch (loss, top1,
top5, val_*, learning_rate, images_per_s, wall_s, ...) and any `extra` fields. The file is
rewritten atomically each epoch, so a crash never leaves a torn line. Only the
chief should write it (pass `path=None` elsewhere).

Usage:

    model.fit(ds, callbacks=[MetricsLogger("run/metrics.jsonl")], ...)
    # train/run_dir.read_metrics("run/metrics.jsonl") reads it back
"""

import json
import math
import os

import keras
import tensorflow as tf

from mcnn_keras.io.atomic import write_text_atomic


def _jsonable(value):
    value = float(value) if hasattr(value, "__float__") else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsLogger(keras.callbacks.Callback):
    """Writes epoch logs to `path` as JSON lines; keeps earlier runs' lines."""

    def __init__(self, path, extra=None):
        super().__init__()
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"path must be a file path (or None: chief-only logging "
                             f"elsewhere), got {path!r}")
        if extra is not None and not isinstance(extra, dict):
            raise ValueError(f"extra must be a dict of values added to every line, got {extra!r}")
        self.path = os.fspath(path) if path is not None else None
        self.extra = dict(extra or {})

    def on_train_begin(self, logs=None):
        self._lines = []
        if self.path and tf.io.gfile.exists(self.path):
            with tf.io.gfile.GFile(self.path) as f:
                self._lines = [line for line in f.read().splitlines() if line.strip()]

    def on_epoch_end(self, epoch, logs=None):
        if not self.path:
            return
        record = {"epoch": epoch + 1, **self.extra}
        record.update({k: _jsonable(v) for k, v in (logs or {}).items()})
        # A resumed run redoes its last epoch: replace that epoch's old line.
        self._lines = [l for l in self._lines if json.loads(l).get("epoch") != epoch + 1]
        self._lines.append(json.dumps(record, sort_keys=True))
        write_text_atomic(self.path, "\n".join(self._lines) + "\n")
