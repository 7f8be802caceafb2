"""The project's TFRecord schema: one `tf.train.Example` per field of view.

| feature        | type   | content                                        |
|----------------|--------|------------------------------------------------|
| image          | bytes  | raw uint8 pixels, H x W x C, row-major (HWC)   |
| height, width  | int64  | image size                                     |
| channels       | int64  | C: 3 for BBBC021 (DNA, tubulin, actin), 5 for Cell Painting |
| label          | int64  | class index, 0 <= label < num_classes          |
| class_name     | bytes  | UTF-8 class name (e.g. "DMSO")                 |
| compound, concentration, plate, well, site, replicate | bytes | UTF-8 metadata ("" if unknown) |

Pixels stay uint8 on disk and in the input pipeline; the model scales them by
1/255 in its first layer. Shards are named `<prefix>-00003-of-00016.tfrecord`
and written atomically (temporary name, then rename), so a reader never sees a
half-written shard.

Usage:

    with ShardedRecordWriter("out", "train", num_shards=4) as writer:
        writer.write(encode_example(image, label, {"class_name": "DMSO"}))
"""

import gzip
import os
import re
import struct
import zlib

import numpy as np
import tensorflow as tf

from mcnn_keras.io import atomic

GZIP_MAGIC = b"\x1f\x8b"
METADATA_KEYS = ("class_name", "compound", "concentration", "plate", "well",
                 "site", "replicate")
INT_KEYS = ("height", "width", "channels", "label")
_ABSENT = -2**63  # what parsing gives for a missing int feature (then a named error)
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string, default_value=""),
    **{key: tf.io.FixedLenFeature([], tf.int64, default_value=_ABSENT) for key in INT_KEYS},
    **{key: tf.io.FixedLenFeature([], tf.string, default_value="")
       for key in METADATA_KEYS},
}


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def encode_example(image, label, metadata=None):
    """Serializes one uint8 H x W x C image, its label and string metadata."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"image must be uint8 H x W x C, got {image.dtype} {image.shape}")
    metadata = dict(metadata or {})
    unknown = set(metadata) - set(METADATA_KEYS)
    if unknown:
        raise ValueError(f"unknown metadata fields {sorted(unknown)}; "
                         f"allowed: {list(METADATA_KEYS)}")
    height, width, channels = image.shape
    feature = {
        "image": _bytes(np.ascontiguousarray(image).tobytes()),
        "height": _int64(height),
        "width": _int64(width),
        "channels": _int64(channels),
        "label": _int64(label),
    }
    for key in METADATA_KEYS:
        feature[key] = _bytes(str(metadata.get(key, "")).encode("utf-8"))
    # deterministic=True: map fields in a fixed order, so equal inputs give equal
    # bytes in every process (byte-identical shards from the same seed).
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
        deterministic=True)


def _check(condition, message, source):
    """An assertion whose failure names `source` (a file and record, str or tensor)."""
    return tf.debugging.Assert(condition, [source, message])


def parse_features(serialized, source="record"):
    """Parses a serialized example into its feature dict (image still bytes).

    A missing image, height, width, channels or label fails naming `source`
    (tf.errors.InvalidArgumentError). Bytes that are no `tf.train.Example`
    fail unnamed: `find_damage` finds them.
    """
    features = tf.io.parse_single_example(serialized, FEATURES)
    checks = [_check(tf.not_equal(features[key], _ABSENT), f"no {key} feature", source)
              for key in INT_KEYS]
    checks.append(_check(tf.strings.length(features["image"]) > 0, "no image feature",
                         source))
    with tf.control_dependencies(checks):
        return {key: tf.identity(value) for key, value in features.items()}


def decode_image(features, height=None, width=None, channels=3, source="record"):
    """Decodes the raw image bytes, checking them against the stored size.

    Fails (tf.errors.InvalidArgumentError, naming `source`) when the byte count
    differs from height x width x channels, or when the stored size differs from
    the expected `height` x `width` x `channels`.
    """
    image = tf.io.decode_raw(features["image"], tf.uint8)
    shape = tf.stack([features["height"], features["width"], features["channels"]])
    checks = [_check(tf.equal(tf.size(image, out_type=tf.int64), tf.reduce_prod(shape)),
                     "image byte count does not match its height x width x channels",
                     source)]
    if height is not None:
        checks.append(_check(
            tf.reduce_all(tf.equal(shape, tf.constant([height, width, channels], tf.int64))),
            f"image size differs from the expected {height} x {width} x {channels}", source))
    with tf.control_dependencies(checks):
        image = tf.reshape(image, shape)
    if height is not None:
        image = tf.ensure_shape(image, (height, width, channels))
    return image


def decode_label(features, num_classes, source="record"):
    """Returns the int32 label, failing naming `source` if out of range."""
    label = features["label"]
    check = _check(tf.logical_and(label >= 0, label < num_classes),
                   f"label outside [0, {num_classes})", source)
    with tf.control_dependencies([check]):
        return tf.cast(label, tf.int32)


def read_examples(path):
    """Yields (image uint8 array, label, metadata dict) for every record of a file."""
    for serialized in tf.data.TFRecordDataset(path, compression_type(path)):
        features = parse_features(serialized, source=path)
        image = decode_image(features, source=path).numpy()
        metadata = {key: features[key].numpy().decode("utf-8") for key in METADATA_KEYS}
        yield image, int(features["label"].numpy()), metadata


def shard_name(prefix, index, num_shards):
    """The file name of shard `index` of `num_shards`."""
    return f"{prefix}-{index:05d}-of-{num_shards:05d}.tfrecord"


def compression_type(path):
    """Returns "GZIP" if the file at `path` is gzip-compressed, else ""."""
    with tf.io.gfile.GFile(path, "rb") as f:
        return "GZIP" if f.read(2) == GZIP_MAGIC else ""


def write_shard(path, serialized_examples, compression=""):
    """Writes records to `path` atomically; returns how many were written.

    The records go to a temporary file in the same directory (`atomic.atomic_file`,
    gs:// too), which is renamed over `path` only once it is complete and
    closed. `compression` is "" or "GZIP"; readers detect it from the file
    itself (`compression_type`).
    """
    count = 0
    with atomic.atomic_file(path) as tmp:
        with tf.io.TFRecordWriter(tmp, options=compression or None) as writer:
            for record in serialized_examples:
                writer.write(record)
                count += 1
    return count


class ShardedRecordWriter:
    """Writes records round-robin into `num_shards` shards, each atomically.

    Records are buffered per shard and each shard is written in one piece on
    `close()` (or leaving the `with` block without an error); on an error
    nothing is written, and shards from an earlier run are left untouched.
    For data too large for memory, call `write_shard` per shard instead.
    """

    def __init__(self, output_dir, prefix, num_shards, compression=""):
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        self.output_dir, self.prefix, self.num_shards = output_dir, prefix, num_shards
        self.compression = compression
        self._buffers = [[] for _ in range(num_shards)]
        self._count = 0

    def write(self, serialized_example):
        self._buffers[self._count % self.num_shards].append(serialized_example)
        self._count += 1

    def close(self):
        """Writes every shard; returns their paths."""
        tf.io.gfile.makedirs(self.output_dir)
        paths = []
        for index, records in enumerate(self._buffers):
            path = os.path.join(self.output_dir, shard_name(self.prefix, index, self.num_shards))
            write_shard(path, records, self.compression)
            paths.append(path)
        return paths

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        return False


# --- TFRecord framing, read without TensorFlow ops ---------------------------
# uint64 length, uint32 masked CRC-32C of the length, the record, its CRC.
# Plain Python, so the binaries can look at a file before the distribution
# strategy starts TensorFlow's runtime.

_CRC32C_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def masked_crc32c(data):
    """TFRecord's masked CRC-32C of `data`."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _first_record(path, read_record=False):
    """(12-byte header, first record or b"") of a TFRecord file."""
    gzipped = compression_type(path) == "GZIP"
    with tf.io.gfile.GFile(path, "rb") as raw:
        f = gzip.GzipFile(fileobj=raw) if gzipped else raw
        header = f.read(12)
        record = f.read(struct.unpack("<Q", header[:8])[0]) if (
            read_record and len(header) == 12) else b""
    return header, record


def check_file(path):
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
    if len(header) < 12 or struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
        raise ValueError(f"{path}: not a TFRecord file (bad record header)")


def image_shape(path):
    """(height, width, channels) of the first record in a TFRecord file (no TF op runs)."""
    header, record = _first_record(path, read_record=True)
    if len(header) < 12:
        raise ValueError(f"{path}: no records")
    problem = example_problem(record)
    if problem:
        raise ValueError(f"{path}: record 0: {problem}")
    feature = tf.train.Example.FromString(record).features.feature
    return tuple(int(feature[key].int64_list.value[0]) for key in ("height", "width", "channels"))


# --- Finding the damaged record -------------------------------------------------
# TensorFlow's read errors ("corrupted record at 148176", a parse failure) do
# not name the file. TensorFlow's reader locates the damage fast (its CRC-32C
# is C++; ours above does ~6 MB/s), then the framing reader says what it is.

def example_problem(serialized):
    """Why `serialized` is not one of this project's examples, or None."""
    example = tf.train.Example()
    try:
        example.ParseFromString(serialized)
    except Exception:  # pylint: disable=broad-except  (protobuf's DecodeError)
        return f"not a tf.train.Example ({len(serialized)} bytes that do not parse)"
    feature = example.features.feature
    for key in ("image",) + INT_KEYS + METADATA_KEYS:
        kind = "bytes_list" if key == "image" or key in METADATA_KEYS else "int64_list"
        if key not in feature:
            if key in METADATA_KEYS:
                continue
            return f"no {key} feature (not an example of this project's schema?)"
        if feature[key].WhichOneof("kind") != kind or len(getattr(feature[key], kind).value) != 1:
            return f"the {key} feature is not a single {kind.split('_')[0]} value"
    return None


def _framing_problem(path, index):
    """What the TF-free framing reader finds wrong at record `index` of `path`."""
    gzipped = compression_type(path) == "GZIP"
    try:
        with tf.io.gfile.GFile(path, "rb") as raw:
            f = gzip.GzipFile(fileobj=raw) if gzipped else raw
            for i in range(index + 1):
                header = f.read(12)
                if len(header) < 12:
                    return (f"the file ends inside a record header ({len(header)} of 12 bytes): "
                            f"truncated" if header else None)
                length = struct.unpack("<Q", header[:8])[0]
                if struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
                    return "its length field is corrupted (CRC mismatch)"
                if i < index:
                    f.seek(length + 4, 1)
                    continue
                data, footer = f.read(length), f.read(4)
                if len(data) < length or len(footer) < 4:
                    return (f"the file ends inside it ({len(data)} of {length} bytes): "
                            f"truncated")
                if struct.unpack("<I", footer)[0] != masked_crc32c(data):
                    return "its bytes are corrupted (CRC mismatch)"
    except (EOFError, OSError, zlib.error) as e:
        return f"the gzip stream is damaged or cut short ({e})"
    return None


def find_damage(path):
    """(record index, what is wrong) of the first damaged record of `path`, or None.

    Damage: a truncated or corrupted (CRC) record, a damaged gzip stream,
    a record that is no `tf.train.Example` of this schema (`example_problem`).
    """
    index = 0
    try:
        for serialized in tf.data.TFRecordDataset(path, compression_type(path)):
            problem = example_problem(serialized.numpy())
            if problem:
                return index, problem
            index += 1
    except tf.errors.OpError as e:
        tf_says = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:.*", "", e.message).strip()
        return index, _framing_problem(path, index) or tf_says.split("\n")[0] or str(e)
    return None
