"""Labels from a separate table, joined to the fields on key columns.

Screens keep their labels apart from the image lists: a platemap, or JUMP's
`well.csv` (`Metadata_Source, Metadata_Plate, Metadata_Well,
Metadata_JCP2022`: the compound of each well). `read_labels_table` reads one:
a key of the `on` columns (the same names the LoadData CSV has, e.g.
`Metadata_Plate,Metadata_Well`) -> a label. A key listed twice with the same
label is kept once; with different labels it is an error naming both rows.
An empty label cell leaves the key unlabelled.

The label column: `--label_column`; at its index-CSV default ('label') with a
table that has no such column, `Metadata_JCP2022` if the table has it (JUMP),
else the table's one column besides the keys, else an error listing them.

Usage:

    table = read_labels_table("well.csv", ["Metadata_Plate", "Metadata_Well"],
                              "Metadata_JCP2022")
    table.label_of({"Metadata_Plate": "BR1", "Metadata_Well": "A01", ...})   # "JCP2022_0339"
    fields = index_labels(fields, given=(), column="Metadata_JCP2022")  # label = class index
"""

import dataclasses

from mcnn_keras.data.conversion.field import csv_rows
from mcnn_keras.data.conversion.fields import class_names_for

JUMP_LABEL = "Metadata_JCP2022"
DEFAULT_LABEL_COLUMN = "label"  # IndexOptions.label_column's default


class LabelsError(ValueError):
    """A bad labels table; the message is one line naming file, row and column."""


@dataclasses.dataclass(frozen=True)
class LabelsTable:
    """A labels table read: {key (values of `on`): (label, line)}."""
    path: str
    on: tuple
    column: str
    labels: dict

    def label_of(self, row):
        """The label of a row ({column: value}) of another table; '' = none."""
        found = self.labels.get(tuple(row.get(c, "") for c in self.on))
        return found[0] if found else ""


def label_column_for(header, on, given, path):
    """The label column of a table with `header` (see the module docstring)."""
    if given and (given in header or given != DEFAULT_LABEL_COLUMN):
        return given
    others = [c for c in header if c not in on]
    if JUMP_LABEL in others:
        return JUMP_LABEL
    if len(others) == 1:
        return others[0]
    raise LabelsError(f"{path}:1: which column holds the labels? name it with "
                      f"--label_column (columns besides --labels_on: {others})")


def read_labels_table(path, on, label_column=DEFAULT_LABEL_COLUMN):
    """The `LabelsTable` of a CSV, or LabelsError (missing column, conflicting key)."""
    chosen = []

    def check(header):
        for column in on:
            if column not in header:
                raise LabelsError(f"{path}:1: no column {column!r} (--labels_on); the "
                                  f"header has {header}")
        chosen.append(label_column_for(header, on, label_column, path))
        if chosen[0] not in header:
            raise LabelsError(f"{path}:1: no column {chosen[0]!r} (--label_column); the "
                              f"header has {header}")
        return list(on) + chosen

    rows = csv_rows(path, (), LabelsError, check)
    column = chosen[0] if chosen else label_column
    labels = {}
    for line, row in rows:
        key, label = tuple(row[c] for c in on), row[column]
        if not label:
            continue
        previous = labels.setdefault(key, (label, line))
        if previous[0] != label:
            raise LabelsError(
                f"{path}:{line}: column {column!r}: {dict(zip(on, key))} is labelled "
                f"{label!r} here but {previous[0]!r} at {path}:{previous[1]} (one label "
                "per key; remove one of the rows)")
    return LabelsTable(path, tuple(on), column, labels)


def index_labels(fields, given=(), column="", error=LabelsError):
    """`fields` with `label` = the index of their class name among `given` (or
    `fields.class_names_for`'s default over all of them); -1 = unlabelled.
    A class outside `given` is an error naming the field's row and `column`."""
    names, _ = class_names_for([f.class_name for f in fields], given)
    index = {name: i for i, name in enumerate(names)}
    result = []
    for field in fields:
        if field.class_name and field.class_name not in index:
            raise error(f"{field.where()}: column {column!r}: unknown class "
                        f"{field.class_name!r}; --class_names has {names}")
        result.append(dataclasses.replace(
            field, label=index[field.class_name] if field.class_name else -1))
    return result
