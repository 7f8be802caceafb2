"""Class-balanced sampling of the training stream (`--balance=class`).

Screens are far from balanced: DMSO is often half the wells, and a compound
screen has a few replicates per compound. With `--balance=class` each record
of class c is kept with probability min(count) / count(c) (the rarest class
always), so the stream holds every class about equally often; epochs keep
their length (`steps_per_epoch` batches), drawn from the repeated stream.

Whether a record is kept is a stateless function of (seed, epoch, worker,
position in the repeated stream), so the data order stays a deterministic
function of seed, epoch and worker, and a resumed run sees exactly the
batches it would have seen (`dataset.epoch_batches` skips the same prefix).
The counts come from one pass over the worker's files that parses only
the labels (about the cost of counting the records).

Usage:

    keep = keep_probabilities(label_counts(files, num_classes=13))
    ds = ds.repeat().enumerate().filter(keep_filter(keep, seed=7)).map(lambda i, r: r)
"""

import functools

import numpy as np
import tensorflow as tf

from mcnn_keras.io import records

MODES = ("none", "class")


@functools.lru_cache(maxsize=8)
def _cached_counts(files, num_classes):
    counts = np.zeros(num_classes, np.int64)
    label_only = {"label": records.FEATURES["label"]}
    for path in files:
        ds = tf.data.TFRecordDataset(path, records.compression_type(path))
        ds = ds.map(lambda r: tf.io.parse_single_example(r, label_only)["label"],
                    num_parallel_calls=tf.data.AUTOTUNE)
        for batch in ds.batch(4096):
            labels = batch.numpy()
            bad = labels[(labels < 0) | (labels >= num_classes)]
            if bad.size:
                raise ValueError(f"{path}: label {int(bad[0])} outside [0, {num_classes})")
            counts += np.bincount(labels, minlength=num_classes)
    return tuple(int(c) for c in counts)


def label_counts(files, num_classes):
    """Records per label in `files` (a tuple of int, one per class)."""
    return _cached_counts(tuple(files), num_classes)


def keep_probabilities(counts):
    """min(count) / count(c) for every class present (0 for absent ones)."""
    present = [c for c in counts if c]
    if not present:
        raise ValueError("--balance=class: the training files hold no records")
    rarest = min(present)
    return tuple(rarest / c if c else 0.0 for c in counts)


def keep_filter(keep, seed):
    """A `filter` predicate over (position, (source, serialized record)) pairs."""
    keep = tf.constant(keep, tf.float32)
    label_only = {"label": records.FEATURES["label"]}

    def predicate(position, record):
        label = tf.io.parse_single_example(record[1], label_only)["label"]
        draw = tf.random.stateless_uniform([], seed=tf.stack(
            [tf.constant(seed, tf.int64), position]))
        # An out-of-range label is kept: decoding it then fails naming the record.
        inside = tf.logical_and(label >= 0, label < tf.size(keep, out_type=tf.int64))
        return tf.logical_or(tf.logical_not(inside),
                             draw < tf.gather(keep, tf.clip_by_value(label, 0, len(keep) - 1)))
    return predicate
