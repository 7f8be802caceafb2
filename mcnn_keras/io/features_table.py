"""The features table: one row per field of view, its metadata and its features, in Parquet.

The layout follows pycytominer's convention, so pycytominer and cytotable
read it unchanged: metadata columns carry the `Metadata_` prefix and are
strings ("" when unknown); every other column is a feature (float32;
`MCNN_0000` .. `MCNN_0511` for the network's 512-d penultimate layer). The
standard metadata columns (`STANDARD_COLUMNS`) are always present; rows may
add more, as `Metadata_<Name>` keys. `extra` (JSON) travels in the file's
schema metadata: which model, which layer, which normalisation.

Usage:

    write_features("fields.parquet", [{"plate": "Week1_22123", "well": "B02", "compound":
                                       "taxol", "class_name": "Microtubule stabilizers"}],
                   features)                                     # (N, D) array
    with FeaturesWriter("fields.parquet", extra={"saved_model": path}) as writer:
        for rows, batch in chunks:                               # streaming: batches
            writer.write(rows, batch)                            # of any size
    metadata, features = read_features("fields.parquet")         # {column: [str]}, (N, D)
    table = read_table("fields.parquet", required=("Metadata_Plate",))
    table.feature_names, table.extra

Row keys are the project's metadata names (`records.METADATA_KEYS`:
class_name, compound, ... ; `KEY_COLUMNS` maps them) or full `Metadata_*`
column names. Writes are atomic (`atomic.atomic_file`): the file appears
whole when the writer closes, or not at all. Bad input raises one-line
ValueErrors naming the file and the column (and row).
"""

import collections
import json
import os

import numpy as np

from mcnn_keras.io import atomic
from mcnn_keras.io import storage

PREFIX = "Metadata_"
FEATURE_PREFIX = "MCNN_"
STANDARD_COLUMNS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Compound",
                    "Metadata_Concentration", "Metadata_Replicate", "Metadata_MoA",
                    "Metadata_Predicted_MoA", "Metadata_Source")
# Row keys (records.METADATA_KEYS and predict's names) -> columns.
KEY_COLUMNS = {"plate": "Metadata_Plate", "well": "Metadata_Well", "site": "Metadata_Site",
               "compound": "Metadata_Compound", "concentration": "Metadata_Concentration",
               "replicate": "Metadata_Replicate", "class_name": "Metadata_MoA",
               "moa": "Metadata_MoA", "predicted_class": "Metadata_Predicted_MoA",
               "source": "Metadata_Source"}
_EXTRA_KEY = b"mcnn_keras"
ROWS_PER_GROUP = 4096  # one Parquet row group per this many rows: a small footer

FeaturesFile = collections.namedtuple("FeaturesFile", "metadata features feature_names extra")


def _arrow():
    try:
        import pyarrow  # pylint: disable=import-outside-toplevel
        import pyarrow.parquet  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ValueError("Parquet features tables need pyarrow: pip install pyarrow") from None
    return pyarrow, pyarrow.parquet


def default_feature_names(num_features):
    """MCNN_0000, MCNN_0001, ...: the network's features."""
    return [f"{FEATURE_PREFIX}{i:04d}" for i in range(num_features)]


def _column_of(key, path, row):
    if key.startswith(PREFIX):
        return key
    if key in KEY_COLUMNS:
        return KEY_COLUMNS[key]
    raise ValueError(f"{path}: row {row}: unknown metadata key {key!r}; use "
                     f"{sorted(KEY_COLUMNS)} or a {PREFIX}* column name")


def _to_columns(path, rows, start):
    """The rows' metadata as {column: value} dicts, values as strings."""
    converted = []
    for i, row in enumerate(rows, start):
        out = {}
        for key, value in row.items():
            column = _column_of(key, path, i)
            text = "" if value is None else (value.decode() if isinstance(value, bytes)
                                             else str(value))
            if column in out and out[column] != text:
                raise ValueError(f"{path}: row {i}: two keys give {column} "
                                 f"({out[column]!r} and {text!r})")
            out[column] = text
        converted.append(out)
    return converted


class FeaturesWriter:
    """Writes a features table in batches; the file appears (atomically) at `close`.

    Metadata columns are fixed by the first batch (the standard ones plus
    any other `Metadata_*` keys it has); the feature count by the first batch
    too, unless `feature_names` is given. Rows are buffered to
    `rows_per_group` and written as one row group each. On an exception
    inside the `with` block nothing is written and an old file is kept.
    """

    def __init__(self, path, feature_names=None, extra=None, rows_per_group=ROWS_PER_GROUP):
        self.path = os.fspath(path)
        self._names = list(feature_names) if feature_names is not None else None
        self._extra = extra
        self._rows_per_group = max(1, int(rows_per_group))
        self._columns = None
        self._schema = None
        self._buffer_rows, self._buffer_features, self._buffered = [], [], 0
        self._writer = None
        self._atomic = None
        self._tmp = None
        self.num_rows = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort(exc_type, exc, tb)
            return False
        try:
            self.close()
        except BaseException as error:
            self.abort(type(error), error, error.__traceback__)
            raise
        return False

    def _start(self, num_features, first_rows):
        pa, pq = _arrow()
        if self._names is None:
            self._names = default_feature_names(num_features)
        if len(self._names) != num_features:
            raise ValueError(f"{self.path}: {num_features} features per row, but "
                             f"{len(self._names)} feature names")
        bad = [n for n in self._names if not isinstance(n, str) or not n or n.startswith(PREFIX)]
        if bad or len(set(self._names)) != len(self._names):
            raise ValueError(f"{self.path}: feature names must be unique, non-empty and "
                             f"not start with {PREFIX!r}: {(bad or self._names)[:3]}")
        columns = list(STANDARD_COLUMNS)
        for row in first_rows:
            columns += [c for c in row if c not in columns]
        self._columns = columns
        fields = [pa.field(c, pa.string()) for c in columns]
        fields += [pa.field(n, pa.float32()) for n in self._names]
        metadata = ({_EXTRA_KEY: json.dumps(self._extra, sort_keys=True).encode()}
                    if self._extra is not None else None)
        self._schema = pa.schema(fields, metadata=metadata)
        self._atomic = atomic.atomic_file(self.path)
        self._tmp = self._atomic.__enter__()  # pylint: disable=unnecessary-dunder-call
        self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd")

    def write(self, metadata_rows, features):
        """Appends N rows: N metadata dicts and an (N, D) array of finite numbers."""
        features = np.asarray(features)
        if features.ndim != 2 or len(features) != len(metadata_rows):
            raise ValueError(f"{self.path}: need N metadata rows and (N, D) features, got "
                             f"{len(metadata_rows)} rows and features of shape {features.shape}")
        if not np.issubdtype(features.dtype, np.number):
            raise ValueError(f"{self.path}: features must be numbers, got {features.dtype}")
        features = features.astype(np.float32)
        finite = np.isfinite(features)
        if not finite.all():
            row, column = np.argwhere(~finite)[0]
            raise ValueError(f"{self.path}: row {self.num_rows + row}, feature {column}: "
                             f"{features[row, column]} (features must be finite)")
        rows = _to_columns(self.path, metadata_rows, self.num_rows)
        if self._schema is None:
            self._start(features.shape[1], rows)
        if features.shape[1] != len(self._names):
            raise ValueError(f"{self.path}: row {self.num_rows}: {features.shape[1]} features, "
                             f"earlier rows had {len(self._names)}")
        for i, row in enumerate(rows, self.num_rows):
            unknown = [c for c in row if c not in self._columns]
            if unknown:
                raise ValueError(f"{self.path}: row {i}: column {unknown[0]} is not in the "
                                 f"first batch's columns")
        self._buffer_rows += rows
        self._buffer_features.append(features)
        self._buffered += len(rows)
        self.num_rows += len(rows)
        while self._buffered >= self._rows_per_group:
            self._flush(self._rows_per_group)

    def _flush(self, count):
        pa, _ = _arrow()
        features = np.concatenate(self._buffer_features) if self._buffer_features else None
        rows, self._buffer_rows = self._buffer_rows[:count], self._buffer_rows[count:]
        arrays = [pa.array([r.get(c, "") for r in rows], pa.string()) for c in self._columns]
        arrays += [pa.array(np.ascontiguousarray(features[:count, j]))
                   for j in range(features.shape[1])]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        self._buffer_features = [features[count:]] if len(features) > count else []
        self._buffered -= count

    def close(self):
        """Writes what is buffered and puts the file in place."""
        if self._schema is None:
            if self._names is None:
                raise ValueError(f"{self.path}: no rows written and no feature names given")
            self._start(len(self._names), [])
        if self._buffered:
            self._flush(self._buffered)
        self._writer.close()
        self._writer = None
        self._atomic, atomic_cm = None, self._atomic
        atomic_cm.__exit__(None, None, None)  # fsync, rename

    def abort(self, exc_type=None, exc=None, tb=None):
        """Drops everything written so far; the target path is untouched."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
        if self._atomic is not None:
            exc = exc or RuntimeError("aborted")  # atomic_file removes its temporary
            self._atomic, atomic_cm = None, self._atomic
            atomic_cm.__exit__(exc_type or type(exc), exc, tb)


def write_features(path, metadata_rows, features, extra=None, feature_names=None):
    """Writes N rows (N metadata dicts, (N, D) features) to `path` atomically."""
    features = np.asarray(features)
    if feature_names is None and features.ndim == 2:
        feature_names = default_feature_names(features.shape[1])
    with FeaturesWriter(path, feature_names=feature_names, extra=extra) as writer:
        writer.write(metadata_rows, features)
    return path


def _read_arrow(path):
    pa, pq = _arrow()
    path = os.fspath(path)
    if storage.is_remote(path):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        storage.require_filesystem(path)
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        with tf.io.gfile.GFile(path, "rb") as f:
            source = pa.BufferReader(f.read())
    else:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        if os.path.isdir(path):
            raise ValueError(f"{path}: is a directory, not a Parquet file")
        source = path
    try:
        return pq.read_table(source)
    except (pa.ArrowException, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path}: not a readable Parquet file ({first})") from None


def read_table(path, required=()):
    """Reads a features table: FeaturesFile(metadata, features, feature_names, extra).

    metadata: {column: list of str} for every `Metadata_*` column (nulls and
    non-string values become strings, "" for null); features: (N, D) float32
    from every other column, in file order; extra: the writer's dict or None.
    `required`: column names that must be present. One-line ValueErrors name
    the file and the column (and row) at fault.
    """
    pa, _ = _arrow()
    table = _read_arrow(path)
    names = table.column_names
    for column in required:
        if column not in names:
            raise ValueError(f"{path}: no column {column}")
    metadata, feature_names = {}, []
    for name in names:
        if name.startswith(PREFIX):
            metadata[name] = ["" if v is None else str(v)
                              for v in table.column(name).to_pylist()]
        else:
            feature_names.append(name)
    if not feature_names:
        raise ValueError(f"{path}: no feature columns (columns without the {PREFIX} prefix)")
    features = np.empty((table.num_rows, len(feature_names)), np.float32)
    for j, name in enumerate(feature_names):
        column = table.column(name)
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            raise ValueError(f"{path}: column {name} is {column.type}, not a number (feature "
                             f"columns are those without the {PREFIX} prefix)")
        if column.null_count:
            row = column.to_pylist().index(None)
            raise ValueError(f"{path}: column {name}, row {row}: empty (features must be numbers)")
        features[:, j] = column.to_numpy()
    finite = np.isfinite(features)
    if not finite.all():
        row, j = np.argwhere(~finite)[0]
        raise ValueError(f"{path}: column {feature_names[j]}, row {row}: {features[row, j]} "
                         f"(features must be finite)")
    raw = (table.schema.metadata or {}).get(_EXTRA_KEY)
    extra = json.loads(raw) if raw else None
    return FeaturesFile(metadata, features, feature_names, extra)


def read_features(path, required=()):
    """(metadata {column: [str]}, features (N, D) float32) of a features table."""
    table = read_table(path, required)
    return table.metadata, table.features
