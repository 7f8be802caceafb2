"""tf.data input pipelines over the project's TFRecord shards.

Training data is a deterministic stream: data epoch `e` of worker `w` is a
function of (seed, e, w) alone. Each epoch shuffles this worker's file order,
interleaves the files (parallel reads, `cycle_length` at a time), shuffles
records in a buffer, takes exactly `steps_per_epoch x batch_size` records,
decodes them in parallel, optionally applies a random dihedral variant
(`dihedral.py`: the same set the converter writes), and
batches with drop_remainder. Epochs follow each other without end, so the step
counter never drifts and a run resumed at global step `s` sees exactly the
batches an uninterrupted run would (`start_step`).

Files are sharded across workers by index (file i goes to worker i % n), so
each shard is read by exactly one worker per epoch.

Usage:

    files = list_files("data/train-*.tfrecord")
    ds = train_dataset(files, config.DataConfig(height=128, width=128, channels=3,
                                                num_classes=13),
                       Stream(batch_size=8, steps_per_epoch=50, seed=1))
"""

import dataclasses
import glob
import logging
import os
import re

import tensorflow as tf

from mcnn_keras.io import atomic
from mcnn_keras.data import balance
from mcnn_keras.data import dihedral
from mcnn_keras.io import records
from mcnn_keras.io import storage

_LOG = logging.getLogger(__name__)


def list_files(patterns, check=True):
    """Expands comma-separated globs (or a list of them) into sorted files.

    Raises ValueError naming a pattern that matches nothing, or a file that is
    not a TFRecord file.
    """
    storage.require_filesystem(patterns)  # s3:// needs tensorflow-io: one line if it cannot load
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p.strip()]
    files = []
    for pattern in patterns:
        pattern = pattern.strip()
        matches = sorted(tf.io.gfile.glob(pattern)) if storage.is_remote(pattern) else sorted(
            glob.glob(os.path.expanduser(pattern)))
        # A shard still being written (object stores list it) is not data yet.
        matches = [m for m in matches if not atomic.is_temporary(os.path.basename(m))]
        if not matches:
            raise ValueError(f"no files match {pattern!r}")
        files.extend(matches)
    files = sorted(set(files))
    if check:
        for path in files:
            records.check_file(path)
    return files


def files_for_worker(files, worker_index, num_workers, what=""):
    """This worker's shards: file i goes to worker i % num_workers.

    `what` ("training", "validation") names the files in the error raised
    when there are fewer than workers.
    """
    if len(files) < num_workers:
        kind = f"{what} " if what else ""
        raise ValueError(
            f"{len(files)} {kind}TFRecord files for {num_workers} workers: every worker "
            f"needs at least one {kind}shard (write more shards, e.g. 64-256)")
    return files[worker_index::num_workers]


def count_records(files):
    """Counts the records in `files` (reads them through once)."""
    counts = {}
    for path in files:
        ds = tf.data.TFRecordDataset(path, records.compression_type(path))
        try:
            counts[path] = int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
        except tf.errors.OpError as e:
            raise diagnose_read_error([path], e) from None
    return counts


def diagnose_read_error(files, error):
    """`error` (reading `files` failed) as an error naming the damaged file and record.

    TensorFlow's errors for a truncated, corrupted (CRC) or gzip-truncated
    shard, or a record that is no `tf.train.Example`, do not say which file;
    this scans `files` in order (`records.find_damage`) and returns an error
    of the same class, "<file>: record <i>: <what>". `error` itself comes back
    when it is not such an error, already names its record, or no damage is
    found.
    """
    message = getattr(error, "message", "") or ""
    # TensorFlow quotes an unparsable record in its error; Python then fails
    # to decode that message and raises UnicodeDecodeError instead.
    if not (isinstance(error, (tf.errors.DataLossError, UnicodeDecodeError)) or (
            isinstance(error, tf.errors.InvalidArgumentError)
            and "assertion failed" not in message
            and re.search(r"[Pp]ars(e|ing)|Example|Feature", message))):
        return error
    _LOG.info("a read error (%s): looking for the damaged record in %d file(s)",
              type(error).__name__, len(files))
    for path in files:
        damage = records.find_damage(path)
        if damage:
            kind = tf.errors.DataLossError if isinstance(error, UnicodeDecodeError) else type(
                error)
            return kind(None, None, f"{path}: record {damage[0]}: {damage[1]}")
    return error


def named_errors(ds, files):
    """Iterates `ds` (reading `files`); a read error names the damaged file."""
    try:
        yield from ds
    except (tf.errors.OpError, UnicodeDecodeError) as e:
        raise diagnose_read_error(files, e) from None


@dataclasses.dataclass(frozen=True)
class Stream:
    """Where one worker's training stream stands: the run's plan for the data.

    The data itself (files, geometry, shuffling, augmentation) is the
    `config.DataConfig` section, handed to `train_dataset` whole.
    """

    batch_size: int  # per replica
    steps_per_epoch: int
    seed: int = 0
    num_epochs: int = 1  # epochs the stream is planned for (it goes on beyond)
    start_step: int = 0  # global step to resume at
    worker_index: int = 0


def _decoder(height, width, channels, num_classes, with_metadata=False):
    def decode(source, serialized):
        features = records.parse_features(serialized, source)
        image = records.decode_image(features, height, width, channels, source=source)
        label = records.decode_label(features, num_classes, source=source)
        if with_metadata:
            return image, label, {key: features[key] for key in records.METADATA_KEYS}
        return image, label
    return decode


def _read_file(path, compression):
    """(source, serialized) pairs; source names the file and record index."""
    def name(index, serialized):
        return tf.strings.join([path, ": record ", tf.strings.as_string(index)]), serialized
    return tf.data.TFRecordDataset(path, compression).enumerate().map(name)


def _interleave_records(files, cycle_length, file_order_seed=None):
    """Reads `files` interleaved, optionally in a seeded shuffled file order."""
    compressions = [records.compression_type(f) for f in files]
    ds = tf.data.Dataset.from_tensor_slices((files, compressions))
    if file_order_seed is not None:
        # reshuffle_each_iteration=False: the order must not depend on how
        # often the dataset was iterated (Keras peeks at a fresh iterator
        # before fit under tf.distribute, and prefetch runs ahead).
        ds = ds.shuffle(len(files), seed=file_order_seed, reshuffle_each_iteration=False)
    return ds.interleave(
        _read_file,
        cycle_length=max(1, min(cycle_length, len(files))), block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _epoch_seed(stream, epoch):
    """One seed per (seed, epoch, worker): data order survives restarts."""
    return (stream.seed * 1_000_003 + epoch * 7919 + stream.worker_index) % 2**31


def epoch_batches(files, data, stream, epoch):
    """Data epoch `epoch` of this worker: exactly `steps_per_epoch` batches,
    fewer for the epoch a resumed run starts in (its first `start_step %
    steps_per_epoch` are skipped).

    `epoch` is a Python int: with a tensor seed, `shuffle` fails when the
    global seed is 0 (TensorFlow compares the seed pair with (0, 0) in Python).
    """
    records_per_epoch = stream.steps_per_epoch * stream.batch_size
    start_epoch, skip_steps = divmod(stream.start_step, stream.steps_per_epoch)
    decode = _decoder(data.height, data.width, data.channels, data.num_classes)
    variants = dihedral.num_variants(data.height, data.width)
    epoch_seed = _epoch_seed(stream, epoch)
    ds = _interleave_records(files, data.cycle_length, epoch_seed if data.shuffle else None)
    if data.shuffle:
        ds = ds.shuffle(data.shuffle_buffer, seed=epoch_seed + 1,
                        reshuffle_each_iteration=False)  # see _interleave_records
    ds = ds.repeat()
    if data.balance == "class":
        keep = balance.keep_probabilities(balance.label_counts(files, data.num_classes))
        ds = ds.enumerate().filter(balance.keep_filter(keep, epoch_seed + 3))
        ds = ds.map(lambda position, record: record)
    ds = ds.take(records_per_epoch).enumerate()
    if epoch == start_epoch:
        ds = ds.skip(skip_steps * stream.batch_size)

    def parse(index, record):
        image, label = decode(*record)
        if data.augment:
            seed = tf.stack([tf.constant(epoch_seed + 2, tf.int64), index])
            variant = tf.random.stateless_uniform([], seed=seed, maxval=variants,
                                                  dtype=tf.int64)
            image = dihedral.apply_tf(image, variant)
        return image, label
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(stream.batch_size, drop_remainder=True)


def train_dataset(files, data, stream):
    """The endless, deterministic training stream of (uint8 images, int labels).

    `data` is the `config.DataConfig` section, `stream` this worker's `Stream`.
    The epochs `epoch_batches` gives, one after the other from the resumed
    one; past the planned epochs the last one repeats (Keras never runs dry).

    Each epoch fills its shuffle buffer when it starts. Overlapping that with
    the previous epoch (two epochs open) was measured at 1024 x 1280, batch 16:
    the refill costs about 0.5 s per epoch (the input alone runs at 480
    images/s on 2 cores), under 0.1 % of an epoch of training, while the
    second open epoch costs a second buffer (+1 GB peak RSS). So: sequential.
    """
    unresolved = [k for k in ("height", "width", "channels", "num_classes")
                  if not getattr(data, k)]
    if unresolved:  # train/data_shape.resolve_data_shape fills them in from the shards
        raise ValueError(f"train_dataset: {', '.join(unresolved)} not resolved (0)")
    start_epoch = stream.start_step // stream.steps_per_epoch
    last_epoch = max(stream.num_epochs, start_epoch + 1)
    ds = epoch_batches(files, data, stream, start_epoch)
    for epoch in range(start_epoch + 1, last_epoch):
        ds = ds.concatenate(epoch_batches(files, data, stream, epoch))
    ds = ds.concatenate(epoch_batches(files, data, stream, last_epoch).repeat())
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(files, height, width, batch_size, num_classes=13, cycle_length=16,
                 repeat=False, with_metadata=False, channels=3):
    """Finite, unshuffled (uint8 images, int labels) batches for validation.

    `with_metadata` adds a third element: the string metadata fields of
    `records.METADATA_KEYS`, batched, for per-treatment reports.
    """
    ds = _interleave_records(files, cycle_length)
    ds = ds.map(_decoder(height, width, channels, num_classes, with_metadata),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)
