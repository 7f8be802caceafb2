"""What `mcnn-predict` reads: the kind of `--inputs`, its fields of view, their pixels.

Four kinds, told apart by the argument itself:

| kind          | `--inputs`                                  | pixels                          |
|---------------|---------------------------------------------|---------------------------------|
| `bbbc021_csv` | a CSV with BBBC021's image-table (`Image_*`) columns | three 16-bit TIFFs per field |
| `index_csv`   | any other CSV: the converter's index CSV    | 2-4 single-channel 8/16-bit TIFF/PNG files, or one multi-channel file |
| `images`      | globs of PNG/TIFF files (by their first bytes) | 8-bit RGB, already normalised |
| `tfrecords`   | globs of TFRecord shards (by their framing) | the project's record schema     |

CSV rows are read by the converters' own readers (`conversion.fields`), so a
field is listed, checked and read exactly as `mcnn-convert-*` reads it.

Usage:

    kind, files = detect_kind("new/BBBC021_v1_image.csv")     # ("bbbc021_csv", [csv])
    fields = csv_fields(kind, files[0], moa_csv="")            # [InputField], in CSV order
    raw = read_raw(fields[0], 1024, 1280)                      # uint16 H x W x 3
    image = read_rgb_image("a.png", 1024, 1280)                # uint8 H x W x 3

Every problem is a ValueError (an `ImageError` for one field's pixels) whose
one-line message names the file and, for CSV input, the row.
"""

import csv
import dataclasses
import glob
import logging
import os

import numpy as np

from mcnn_keras.io import atomic
from mcnn_keras.io import storage
from mcnn_keras.data.bbbc021 import metadata
from mcnn_keras.data.conversion import fields as conversion_fields
from mcnn_keras.data.conversion import images
from mcnn_keras.data.conversion.options import IndexOptions

_LOG = logging.getLogger(__name__)
BBBC021_CSV, INDEX_CSV, IMAGES, TFRECORDS = "bbbc021_csv", "index_csv", "images", "tfrecords"
KINDS = (BBBC021_CSV, INDEX_CSV, IMAGES, TFRECORDS)
RAW_KINDS = (BBBC021_CSV, INDEX_CSV)
_PNG_MAGIC, _TIFF_MAGICS = b"\x89PNG\r\n\x1a\n", (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

ImageError = images.ImageError


@dataclasses.dataclass(frozen=True)
class InputField:
    """One field of view to classify."""
    files: tuple     # its input file(s): channel images, the image, or the TFRecord shard
    where: str       # names it in messages: "images.csv:12", "a.png", "shard: record 3"
    metadata: dict   # records.METADATA_KEYS strings, "" if unknown; class_name = true class
    row: int = None  # CSV line (header = 1) or record index in its shard; None: neither
    fov: object = None  # raw kinds: the conversion.field.FieldOfView to read

    @classmethod
    def of(cls, fov):
        """The InputField of a converter's FieldOfView."""
        return cls(tuple(fov.paths), fov.where(), fov.metadata(), fov.row, fov)


def _expand(patterns):
    """Sorted files matching comma-separated globs; ValueError naming an empty pattern."""
    files = []
    for pattern in [p.strip() for p in patterns.split(",") if p.strip()]:
        if storage.is_remote(pattern):  # s3://, gs://: objects, listed by tf.io.gfile
            storage.require_filesystem(pattern)
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            matches = sorted(m for m in tf.io.gfile.glob(pattern)
                             if not atomic.is_temporary(os.path.basename(m)))
            if not matches:
                raise ValueError(f"--inputs: no files match {pattern!r}")
            files += matches
            continue
        matches = sorted(m for m in glob.glob(os.path.expanduser(pattern))
                         if os.path.isfile(m) and not atomic.is_temporary(os.path.basename(m)))
        if not matches:
            if glob.has_magic(pattern) or not os.path.exists(pattern):
                raise ValueError(f"--inputs: no files match {pattern!r}")
            raise ValueError(f"--inputs: {pattern} is not a file")
        files += matches
    if not files:
        raise ValueError("--inputs is empty")
    return sorted(set(files))


def _sniff(path):
    """`images` or `tfrecords` from the first bytes of `path`, else None."""
    try:
        if storage.is_remote(path):
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            try:
                with tf.io.gfile.GFile(path, "rb") as f:
                    head = f.read(8)
            except tf.errors.OpError as e:
                raise ValueError(f"{path}: cannot read ({e.message})") from None
        else:
            with open(path, "rb") as f:
                head = f.read(8)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    if head == _PNG_MAGIC or head[:4] in _TIFF_MAGICS:
        return IMAGES
    from mcnn_keras.io import records  # pylint: disable=import-outside-toplevel
    try:
        records.check_file(path)
    except ValueError:
        return None
    return TFRECORDS


def csv_header(path):
    """The stripped column names of a CSV file (ValueError naming it)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [c.strip() for c in next(csv.reader(f), [])]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 CSV file ({e.reason})") from None
    except csv.Error as e:
        raise ValueError(f"{path}: malformed CSV ({e})") from None


def detect_kind(inputs):
    """(kind, files) of the `--inputs` argument; ValueError if it is none of `KINDS`."""
    single = inputs.strip()
    if single.lower().endswith(".csv") and "," not in single and not glob.has_magic(single):
        if not os.path.isfile(single):
            raise FileNotFoundError(f"--inputs={single}: file not found")
        header = csv_header(single)
        # Any of BBBC021's own columns: its image table (a missing one is named
        # when it is read); otherwise an index CSV (--channel_columns, ...).
        if any(c.startswith("Image_") for c in header):
            return BBBC021_CSV, [single]
        return INDEX_CSV, [single]
    files = _expand(single)
    kinds = {}
    for path in files:
        kinds.setdefault(_sniff(path), path)
    if None in kinds:
        raise ValueError(f"{kinds[None]}: neither a PNG/TIFF image nor a TFRecord file "
                         f"(--inputs takes a CSV of raw fields, an image glob or a TFRecord glob)")
    if len(kinds) > 1:
        raise ValueError(f"--inputs matches both images ({kinds[IMAGES]}) and TFRecord files "
                         f"({kinds[TFRECORDS]}): give one kind")
    return next(iter(kinds)), files


# --- CSV inputs -----------------------------------------------------------------

def csv_fields(kind, path, moa_csv="", index_options=IndexOptions()):
    """The fields listed by a CSV of `kind` (see `detect_kind`), in row order.

    BBBC021: labelled from `moa_csv`, by default `BBBC021_v1_moa.csv` beside
    the table if it exists. Index CSV: the converter's `IndexOptions`; the
    default label column may be absent (new plates are unlabelled).
    """
    if kind == BBBC021_CSV:
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), metadata.MOA_CSV)
        if not moa_csv and os.path.isfile(beside):
            moa_csv = beside
        fields = metadata.read_bbbc021_table(path, moa_csv or None)
    else:
        default = IndexOptions().label_column
        if index_options.label_column == default and default not in csv_header(path):
            _LOG.info("%s has no %r column: its fields are unlabelled", path, default)
            index_options = dataclasses.replace(index_options, label_column="")
        fields = conversion_fields.read_index_csv(path, index_options)
    if not fields:
        raise ValueError(f"{path}: no rows")
    return [InputField.of(f) for f in fields]


def image_fields(files):
    """One field per image file (no metadata)."""
    return [InputField((path,), path, {}) for path in files]


# --- pixels -----------------------------------------------------------------------

def read_raw(field, height, width, resize="error"):
    """The field's raw H x W x 3 pixels (uint16 or uint8, the model's channel order)."""
    return images.read_raw_field(field.fov, height, width, resize)


def read_rgb_image(path, height, width):
    """An 8-bit RGB PNG or TIFF as uint8 H x W x 3, or an ImageError naming the file."""
    image = images.read_image(path)
    if image.dtype != np.uint8:
        raise ImageError(f"{path}: {image.dtype} pixels, expected 8-bit RGB "
                         f"(raw 16-bit fields are listed by a CSV)")
    if image.shape[-1] != 3:
        raise ImageError(f"{path}: {image.shape[-1]} channel(s), expected 3 (RGB)")
    if image.shape[:2] != (height, width):
        raise ImageError(f"{path}: size {image.shape[0]}x{image.shape[1]}, expected "
                         f"{height}x{width} (the export's input size)")
    return image


def true_label(field, class_names):
    """The field's class index in `class_names`, or -1 if unknown."""
    name = field.metadata.get("class_name", "")
    return class_names.index(name) if name in class_names else -1

