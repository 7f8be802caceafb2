"""Fields of view from CSV files, and their raw pixels: what converters and
the predictor read.

Two CSV formats list fields:

- an **index CSV**, one row per field of view: the paths of its channel
  images (one or more single-channel 8/16-bit TIFF or PNG files in the
  `channel_columns`, one per model channel, or one multi-channel file in a
  single column), a label
  column (class name; empty = unlabelled) and optional metadata columns
  (plate, well, site, compound, concentration, replicate; other names via
  `metadata_columns`). Relative paths are relative to the CSV's folder.
  Without a plate column the screen is one plate (plate "").
- **BBBC021's image table** (`read_bbbc021_table`), labelled through its MoA
  table when given.

(CellProfiler LoadData CSVs: `conversion.load_data`.)

Every problem is one line naming the CSV file, row and column (or, for image
files, the file and the CSV row): `FieldError`, `ImageError` (both
ValueError).

Usage:

    from mcnn_keras.data.conversion.fields import (
        IndexOptions, read_index_csv, read_bbbc021_table, read_raw_field)
    fields = read_index_csv("screen/index.csv", IndexOptions(channel_columns="dna,actin"))
    fields = read_bbbc021_table("new/BBBC021_v1_image.csv")      # unlabelled
    raw = read_raw_field(fields[0], 1024, 1280, resize="crop")  # H x W x C uint16/uint8
"""

import os

from mcnn_keras.data import classes
from mcnn_keras.data.conversion.field import FieldOfView, csv_rows, refuse_duplicates
from mcnn_keras.data.conversion.options import IndexOptions

MOA_ORDER = "the BBBC021 mechanism-of-action order (every label is one)"
SORTED = "the sorted labels found"
GIVEN = "--class_names"


class FieldError(ValueError):
    """A bad index CSV; the message is one line naming file, row and column."""


def class_names_for(labels, given=()):
    """(class names in label order, where they came from) for the labels found.

    `given` names win; otherwise the 13 BBBC021 classes in their order when
    every label is one of them, else the sorted distinct labels.
    """
    if given:
        return list(given), GIVEN
    found = {label for label in labels if label}
    if found and found <= set(classes.MOA_CLASSES):
        return list(classes.MOA_CLASSES), MOA_ORDER
    return sorted(found), SORTED


def _needed_columns(path, options):
    """check_header for csv_rows: every column the options name must be there."""
    columns = options.channel_column_list()
    needed = [(c, "--channel_columns") for c in columns]
    if options.label_column:
        needed.append((options.label_column, "--label_column; '' if the CSV has no labels"))
    mapping, explicit = options.metadata_column_map()
    needed += [(mapping[k], "--metadata_columns") for k in sorted(explicit)]

    def check(header):
        for column, flag in needed:
            if column not in header:
                raise FieldError(f"{path}:1: no column {column!r} ({flag}); the header has "
                                 f"{header}")
        return [column for column, _ in needed]
    return check


def read_index_csv(path, options=IndexOptions()):
    """Every row of an index CSV as a FieldOfView (row order), or FieldError.

    Labels index `options.class_names`, or the default of `class_names_for`;
    with given class names a label outside them is an error. Two rows listing
    the same channel files are an error naming both (`refuse_duplicates`).
    """
    rows = csv_rows(path, (), FieldError, _needed_columns(path, options))
    columns = options.channel_column_list()
    mapping, _ = options.metadata_column_map()
    order, given = options.channel_order_tuple(), options.class_name_list()
    labels = [row[options.label_column] if options.label_column else "" for _, row in rows]
    names, _ = class_names_for(labels, given)
    root = os.path.dirname(os.path.abspath(path))
    fields = []
    for (line, row), label in zip(rows, labels):
        where = f"{path}:{line}"
        paths = []
        for column in columns:
            if not row[column]:
                raise FieldError(f"{where}: column {column!r}: empty path")
            paths.append(os.path.normpath(os.path.join(root, row[column])))
        if label and label not in names:
            raise FieldError(f"{where}: column {options.label_column!r}: unknown class "
                             f"{label!r}; --class_names has {names}")
        fields.append(FieldOfView(
            **{key: row[column] for key, column in mapping.items() if column in row},
            class_name=label, label=names.index(label) if label else -1,
            paths=tuple(paths), row=line, channel_order=order,
            bit_depth=options.bit_depth, source=path))
    return refuse_duplicates(fields, FieldError)
