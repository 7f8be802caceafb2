"""tf.data input pipelines over the project's TFRecord shards.

Training data is a deterministic stream: data epoch `e` of worker `w` is a
function of (seed, e, w) alone. Each epoch shuffles this worker's file order,
interleaves the files (parallel reads, `cycle_length` at a time), shuffles
records in a buffer, takes exactly `steps_per_epoch x batch_size` records,
decodes them in parallel, optionally applies a random dihedral variant, and
batches with drop_remainder. Epochs follow each other without end, so the step
counter never drifts and a run resumed at global step `s` sees exactly the
batches an uninterrupted run would (`start_step`).

Files are sharded across workers by index (file i goes to worker i % n), so
each shard is read by exactly one worker per epoch.

Usage:

    files = list_files("data/train-*.tfrecord")
    ds = train_dataset(files, TrainInput(height=128, width=128, batch_size=8,
                                         steps_per_epoch=50, seed=1))
"""

import dataclasses
import glob
import gzip
import os
import struct

import tensorflow as tf

from mcnn_keras import records

_CRC32C_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def _masked_crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _first_record(path, read_record=False):
    """(12-byte header, first record or b"") of a TFRecord file, read without TF ops.

    TFRecord framing: uint64 length, uint32 masked CRC-32C of the length, the
    record, its CRC. Plain Python, so the binaries can look at a file before
    the distribution strategy starts TensorFlow's runtime.
    """
    gzipped = records.compression_type(path) == "GZIP"
    with tf.io.gfile.GFile(path, "rb") as raw:
        f = gzip.GzipFile(fileobj=raw) if gzipped else raw
        header = f.read(12)
        record = f.read(struct.unpack("<Q", header[:8])[0]) if (
            read_record and len(header) == 12) else b""
    return header, record


def check_tfrecord_file(path):
    """Raises ValueError naming `path` unless it starts like a TFRecord file.

    Reads only the first record header (length and its masked CRC-32C), so it
    is cheap even for multi-GB shards; gzip-compressed shards are accepted.
    """
    try:
        header, _ = _first_record(path)
    except (OSError, tf.errors.OpError) as e:
        raise ValueError(f"{path}: cannot read TFRecord file ({e})") from None
    if not header:
        raise ValueError(f"{path}: empty file, not a TFRecord shard")
    if len(header) < 12 or struct.unpack("<I", header[8:])[0] != _masked_crc32c(header[:8]):
        raise ValueError(f"{path}: not a TFRecord file (bad record header)")


def list_files(patterns, check=True):
    """Expands comma-separated globs (or a list of them) into sorted files.

    Raises ValueError naming a pattern that matches nothing, or a file that is
    not a TFRecord file.
    """
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p.strip()]
    files = []
    for pattern in patterns:
        pattern = pattern.strip()
        matches = sorted(tf.io.gfile.glob(pattern)) if "://" in pattern else sorted(
            glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise ValueError(f"no files match {pattern!r}")
        files.extend(matches)
    files = sorted(set(files))
    if check:
        for path in files:
            check_tfrecord_file(path)
    return files


def files_for_worker(files, worker_index, num_workers):
    """This worker's shards: file i goes to worker i % num_workers."""
    if len(files) < num_workers:
        raise ValueError(
            f"{len(files)} TFRecord files for {num_workers} workers: every worker needs "
            f"at least one shard (write more shards, e.g. 64-256)")
    return files[worker_index::num_workers]


def count_records(files):
    """Counts the records in `files` (reads them through once)."""
    counts = {}
    for path in files:
        ds = tf.data.TFRecordDataset(path, records.compression_type(path))
        counts[path] = int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    return counts


def dihedral_variants(height, width):
    """Number of the paper's dihedral variants that keep an H x W image's shape.

    The paper uses 6 variants: identity, 90 degree rotation, horizontal mirror,
    vertical mirror, and the 90 degree rotation of each mirror. Square images
    can take all 6; non-square ones only the shape-preserving 3 (identity and
    the two mirrors).
    """
    return 6 if height == width else 3


def apply_dihedral(image, variant):
    """Applies variant 0..5 (see `dihedral_variants`) to an H x W x C image."""
    def rot90(x):
        return tf.image.rot90(x)
    branches = [
        lambda: image,
        lambda: tf.image.flip_left_right(image),
        lambda: tf.image.flip_up_down(image),
        lambda: rot90(image),
        lambda: rot90(tf.image.flip_left_right(image)),
        lambda: rot90(tf.image.flip_up_down(image)),
    ]
    return tf.switch_case(tf.cast(variant, tf.int32), branches)


@dataclasses.dataclass
class TrainInput:
    """What the training stream needs besides the file list."""

    height: int
    width: int
    batch_size: int  # per replica
    steps_per_epoch: int
    seed: int = 0
    num_classes: int = 13
    cycle_length: int = 16
    shuffle_buffer: int = 256
    shuffle: bool = True
    augment: bool = False
    start_step: int = 0  # global step to resume at
    num_epochs: int = 1  # epochs the stream is planned for (it goes on beyond)
    worker_index: int = 0


def _decoder(height, width, num_classes, with_metadata=False):
    def decode(source, serialized):
        features = records.parse_features(serialized)
        image = records.decode_image(features, height, width, source=source)
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


def train_dataset(files, cfg):
    """The endless, deterministic training stream of (uint8 images, int labels)."""
    records_per_epoch = cfg.steps_per_epoch * cfg.batch_size
    start_epoch, skip_steps = divmod(cfg.start_step, cfg.steps_per_epoch)
    decode = _decoder(cfg.height, cfg.width, cfg.num_classes)
    variants = dihedral_variants(cfg.height, cfg.width)

    def one_epoch(epoch):
        # One seed per (seed, epoch, worker): data order survives restarts.
        epoch_seed = (cfg.seed * 1_000_003 + epoch * 7919 + cfg.worker_index) % 2**31
        ds = _interleave_records(files, cfg.cycle_length,
                                 epoch_seed if cfg.shuffle else None)
        if cfg.shuffle:
            ds = ds.shuffle(cfg.shuffle_buffer, seed=epoch_seed + 1,
                            reshuffle_each_iteration=False)  # see _interleave_records
        ds = ds.repeat().take(records_per_epoch).enumerate()
        if epoch == start_epoch:
            ds = ds.skip(skip_steps * cfg.batch_size)

        def parse(index, record):
            image, label = decode(*record)
            if cfg.augment:
                variant = tf.random.stateless_uniform(
                    [], seed=tf.stack([tf.constant(epoch_seed + 2, tf.int64), index]),
                    maxval=variants, dtype=tf.int64)
                image = apply_dihedral(image, variant)
            return image, label
        ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(cfg.batch_size, drop_remainder=True)

    # Epochs are built in Python (seeds must be Python ints once a global seed
    # is set); the last one repeats so that the stream never runs dry.
    epochs = [one_epoch(e) for e in range(start_epoch, max(cfg.num_epochs, start_epoch + 1))]
    ds = epochs[0]
    for following in epochs[1:]:
        ds = ds.concatenate(following)
    return ds.concatenate(one_epoch(len(epochs) + start_epoch).repeat()).prefetch(
        tf.data.AUTOTUNE)


def eval_dataset(files, height, width, batch_size, num_classes=13, cycle_length=16,
                 repeat=False, with_metadata=False):
    """Finite, unshuffled (uint8 images, int labels) batches for validation.

    `with_metadata` adds a third element: the string metadata fields of
    `records.METADATA_KEYS`, batched, for per-treatment reports.
    """
    ds = _interleave_records(files, cycle_length)
    ds = ds.map(_decoder(height, width, num_classes, with_metadata),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


def per_worker_dataset(strategy, make, per_replica_batch):
    """Builds each worker's own input with `make(worker, num_workers, batch)`.

    Under a multi-worker strategy this goes through
    `distribute_datasets_from_function`, whose batches are per replica and
    which does no auto-sharding of its own (the file list is sharded by
    `make`). In a single process `make(0, 1, batch)` is returned as it is.
    """
    if strategy.extended._in_multi_worker_mode():  # pylint: disable=protected-access
        def fn(ctx):
            return make(ctx.input_pipeline_id, ctx.num_input_pipelines,
                        ctx.get_per_replica_batch_size(
                            per_replica_batch * strategy.num_replicas_in_sync))
        return strategy.distribute_datasets_from_function(fn)
    return make(0, 1, per_replica_batch)


def image_size(path):
    """(height, width) of the first record in a TFRecord file (no TF op runs)."""
    header, record = _first_record(path, read_record=True)
    if len(header) < 12:
        raise ValueError(f"{path}: no records")
    feature = tf.train.Example.FromString(record).features.feature
    return int(feature["height"].int64_list.value[0]), int(feature["width"].int64_list.value[0])
