"""CellProfiler LoadData CSVs -> fields of view, as the Cell Painting Gallery ships them.

A LoadData CSV (one per plate: `<source>/workspace/load_data_csv/<batch>/
<plate>/load_data.csv`, or `load_data_with_illum.csv`) has a row per field of
view and, per channel `<Ch>`, a column pair `FileName_<Ch>` / `PathName_<Ch>`
(CellProfiler's names: `OrigDNA`, `OrigER`, `OrigRNA`, `OrigAGP`,
`OrigMito`, sometimes `OrigBrightfield`; verified against the Gallery's and
JUMP's LoadData files), CellProfiler's illumination functions as
`FileName_Illum<Ch>` / `PathName_Illum<Ch>` (`.npy`, the raw image is
DIVIDED by them), and `Metadata_*` columns (`Metadata_Source`,
`Metadata_Batch`, `Metadata_Plate`, `Metadata_Well`, `Metadata_Site`, ...).

- Channels: `--channels` chooses and orders them by name; a name also
  matches with the `Orig` prefix (`DNA` -> `OrigDNA`). Default: every
  `Orig*` channel in column order, else every channel but the `Illum*` ones.
  Every CSV must have the same channels.
- `--illum=cellprofiler`: each field carries its channels' `Illum` files
  (`FieldOfView.illum_paths`; `images.read_raw_field` divides), and the job
  estimates no map of its own. Default (`estimate`): the Illum columns are
  ignored and the job estimates its map, as for any input.
- PathName: relative to the CSV's folder, or absolute; `s3://` (and other
  URLs) are refused in one line for now.
- Metadata_Plate / Metadata_Well / Metadata_Site -> plate, well, site; every
  other `Metadata_*` column is kept as `FieldOfView.extra_metadata`.
- Labels: from `--labels_csv` joined on `--labels_on` (`labels.py`; JUMP:
  well.csv and `Metadata_JCP2022`), else from the CSV's own `--label_column`
  if it has one, else none: unlabelled fields are returned too (the
  converter counts and skips them; the predictor reads them).

Several CSVs are read in order; a field listed twice (the same files) is an
error naming both rows. Every problem is one line naming file, row and
column (`LoadDataError`, a ValueError).

Usage:

    fields = read_load_data_csvs(["P1/load_data.csv", "P2/load_data.csv"], ImagesOptions(
        output_dir="out", channels="DNA,ER,RNA,AGP,Mito", labels_csv="well.csv",
        label_column="Metadata_JCP2022"))
    fields = read_load_data_csvs(["P3/load_data.csv"])   # for prediction: unlabelled is fine
    selected_channels("P1/load_data.csv")                 # ("OrigDNA", ..., "OrigMito")
    is_load_data_header(["FileName_OrigDNA", "PathName_OrigDNA"])   # True
"""

import os

from mcnn_keras.data.conversion import labels as labels_table
from mcnn_keras.data.conversion.field import (
    UNLABELLED, FieldOfView, csv_rows, refuse_duplicates)
from mcnn_keras.data.conversion.labels import DEFAULT_LABEL_COLUMN
from mcnn_keras.data.conversion.options import LoadDataOptions
from mcnn_keras.io import storage

FILE, PATH = "FileName_", "PathName_"
ORIG, ILLUM = "Orig", "Illum"
METADATA = "Metadata_"
PLATE, WELL, SITE = "Metadata_Plate", "Metadata_Well", "Metadata_Site"
_FIELD_KEYS = {PLATE: "plate", WELL: "well", SITE: "site"}
_DEFAULTS = {"channels": "", "illum": "estimate", "labels_csv": "",
             "labels_on": LoadDataOptions().labels_on, "label_column": DEFAULT_LABEL_COLUMN,
             "class_names": "", "bit_depth": 0, "labels_table": None}


class LoadDataError(ValueError):
    """A bad LoadData CSV; the message is one line naming file, row and column."""


def _get(options, name):
    """An option's value; an options object without it (e.g. the predictor's) has
    the LoadData defaults."""
    return getattr(options, name, _DEFAULTS[name]) if options is not None else _DEFAULTS[name]


def _split(value):
    return [v.strip() for v in value.split(",") if v.strip()]


def is_load_data_header(header):
    """Whether a CSV header is CellProfiler LoadData's: a FileName_<Ch> column with
    its PathName_<Ch> (how a reader tells it from an index CSV)."""
    return any(c.startswith(FILE) and PATH + c[len(FILE):] in header for c in header)


def channels_in(header):
    """The channel names of a LoadData header: every `FileName_<Ch>`, in column order."""
    return [c[len(FILE):] for c in header if c.startswith(FILE) and len(c) > len(FILE)]


def illum_name(channel):
    """The illumination function's channel name: OrigDNA -> IllumDNA, DNA -> IllumDNA."""
    return ILLUM + (channel[len(ORIG):] if channel.startswith(ORIG) else channel)


def resolve_channels(requested, header, path):
    """The CSV's channel names for `requested` (names; '' = the default), in order."""
    available = [c for c in channels_in(header) if not c.startswith(ILLUM)]
    if not requested:
        orig = [c for c in available if c.startswith(ORIG)]
        chosen = orig or available
        if not chosen:
            raise LoadDataError(f"{path}:1: no FileName_<channel> column: not a LoadData CSV "
                                f"(the header has {header[:8]}{' ...' if len(header) > 8 else ''})")
        return chosen
    chosen = []
    for name in requested:
        match = name if name in available else ORIG + name if ORIG + name in available else None
        if match is None:
            raise LoadDataError(f"{path}:1: no column {FILE}{name} or {FILE}{ORIG}{name} for "
                                f"--channels {name!r}; the CSV's channels are {available}")
        if match in chosen:
            raise LoadDataError(f"{path}:1: --channels names {match!r} twice")
        chosen.append(match)
    return chosen


def _header(path):
    found = []

    def check(header):
        found.extend(header)
        return ()
    return csv_rows(path, (), LoadDataError, check), found


def selected_channels(path, options=None):
    """The channel names `options` choose from the LoadData CSV at `path`."""
    _, header = _header(path)
    return tuple(resolve_channels(_split(_get(options, "channels")), header, path))


def _columns_needed(path, header, channels, illum):
    """[(FileName column, PathName column)] per channel, then per Illum file."""
    pairs = [(FILE + c, PATH + c) for c in channels]
    if illum == "cellprofiler":
        pairs += [(FILE + illum_name(c), PATH + illum_name(c)) for c in channels]
    for i, (file_column, path_column) in enumerate(pairs):
        for column in (file_column, path_column):
            if column not in header:
                why = (f"the illumination function of {channels[i - len(channels)]} "
                       "(--illum=cellprofiler; load_data_with_illum.csv has them)"
                       if i >= len(channels) else f"channel {channels[i]}")
                raise LoadDataError(f"{path}:1: no column {column!r} for {why}")
    return pairs


def _file_path(root, where, file_column, path_column, row):
    """The local path of one FileName / PathName pair of a row."""
    name, folder = row[file_column], row[path_column]
    if not name:
        raise LoadDataError(f"{where}: column {file_column!r}: empty file name")
    for column, value in ((path_column, folder), (file_column, name)):
        if storage.scheme(value):
            raise LoadDataError(f"{where}: column {column!r}: {value}: object storage is not "
                                "read yet; copy the images to a local disk and point "
                                "PathName at them")
    return os.path.normpath(os.path.join(root, folder, name))


def _label_source(path, header, options):
    """The row -> label function of one CSV (a labels table or its own column)."""
    table = _get(options, "labels_table")
    if table is not None:
        for column in table.on:
            if column not in header:
                raise LoadDataError(f"{path}:1: no column {column!r} (--labels_on, to join "
                                    f"{table.path}); the header has {header}")
        return table.label_of
    column = _get(options, "label_column")
    if column and column in header:
        return lambda row: row[column]
    if column and column != DEFAULT_LABEL_COLUMN:
        raise LoadDataError(f"{path}:1: no column {column!r} (--label_column; labels from "
                            "another table: --labels_csv)")
    return lambda row: ""


def read_load_data_csv(path, options=None, channels=None):
    """Every row of one LoadData CSV as an unindexed FieldOfView (label -1), in row order."""
    rows, header = _header(path)
    channels = channels or resolve_channels(_split(_get(options, "channels")), header, path)
    illum = _get(options, "illum")
    pairs = _columns_needed(path, header, channels, illum)
    label_of = _label_source(path, header, options)
    extra = [c for c in header if c.startswith(METADATA) and c not in _FIELD_KEYS]
    root = os.path.dirname(os.path.abspath(path))
    fields = []
    for line, row in rows:
        where = f"{path}:{line}"
        files = [_file_path(root, where, f, p, row) for f, p in pairs]
        fields.append(FieldOfView(
            **{key: row.get(column, "") for column, key in _FIELD_KEYS.items()},
            class_name=label_of(row), label=UNLABELLED,
            paths=tuple(files[:len(channels)]), illum_paths=tuple(files[len(channels):]),
            row=line, channel_order=tuple(range(len(channels))),
            bit_depth=_get(options, "bit_depth"), source=path,
            extra_metadata=tuple((c, row[c]) for c in extra),
            columns=tuple(f for f, _ in pairs)))
    return fields


def _same_channels(paths, options):
    """The channels of every CSV (the first CSV's; each must have the same)."""
    chosen = None
    for path in paths:
        channels = selected_channels(path, options)
        if chosen is not None and list(channels) != list(chosen[1]):
            raise LoadDataError(f"{path}:1: channels {list(channels)}, but {chosen[0]} has "
                                f"{list(chosen[1])}; choose them with --channels")
        chosen = chosen or (path, channels)
    return chosen[1]


class _WithTable:
    """The options plus the labels table read once (not per CSV)."""

    def __init__(self, options, table):
        self._options, self.labels_table = options, table

    def __getattr__(self, name):
        return getattr(self._options, name) if self._options is not None else _DEFAULTS[name]


def read_load_data_csvs(paths, options=None):
    """Every row of the LoadData CSVs `paths` (in order) as a FieldOfView.

    Labels index `options.class_names`, or `fields.class_names_for`'s
    default over all CSVs; unlabelled fields (label -1) are included.
    `options`: anything with the `LoadDataOptions` and `IndexOptions`
    fields (`ImagesOptions`); None or missing fields = their defaults.
    """
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise LoadDataError("no LoadData CSV given (--load_data_csv)")
    table = None
    if _get(options, "labels_csv"):
        table = labels_table.read_labels_table(
            _get(options, "labels_csv"), _split(_get(options, "labels_on")),
            _get(options, "label_column"))
    channels = _same_channels(paths, options)
    fields = [f for path in paths
              for f in read_load_data_csv(path, _WithTable(options, table), channels)]
    column = table.column if table else _get(options, "label_column")
    labelled = labels_table.index_labels(fields, _split(_get(options, "class_names")),
                                         column, LoadDataError)
    return refuse_duplicates(labelled, LoadDataError)
