"""One field of view, the unit every converter and predictor works on.

A field is a set of image files (one single-channel file per channel, or
one multi-channel file) plus what is known about it: its class (empty =
unlabelled), plate, well, site, compound, concentration, replicate (the
metadata of the record schema, `records.METADATA_KEYS`), how its channels
map to the model's C input channels, CellProfiler illumination functions to
divide its files by (LoadData CSVs), other metadata the schema has no place
for yet, and the CSV row it came from (so that every error can name it).
Where fields come from: `conversion.fields` (an index CSV, BBBC021's image
table), `conversion.load_data` (CellProfiler LoadData CSVs).

Usage:

    field = FieldOfView(plate="P1", well="B02", site="1", class_name="DMSO",
                        paths=("a_w1.tif", "a_w2.tif", "a_w4.tif"))
    field.label          # 12: the BBBC021 class index, derived when not given
    field.metadata()     # dict for records.encode_example
    rows = csv_rows("index.csv", ["DAPI", "label"])   # [(line, {column: value})]
"""

import csv
import dataclasses
import gzip
import os

from mcnn_keras.data import classes

UNLABELLED = -1
ZERO_CHANNEL = -1  # in `channel_order`: that model channel is all zeros


@dataclasses.dataclass(frozen=True)
class FieldOfView:
    """One field of view: its image files and metadata.

    The first nine fields keep the order of the BBBC021 converter's original
    type, so positional construction still works.
    """
    plate: str = ""          # "" = no plate column: the whole screen is one plate
    well: str = ""
    site: str = ""
    replicate: str = ""
    compound: str = ""
    concentration: str = ""
    class_name: str = ""     # "" = unlabelled
    paths: tuple = ()        # channel files in file order, or one multi-channel file
    row: int = 0             # line in `source` (header = line 1); 0 = unknown
    # Index of class_name in the class list; None derives it: the BBBC021
    # mechanism-of-action index, or UNLABELLED for an empty class name.
    label: int = None
    # Model channel i comes from channel channel_order[i] of the files' channels
    # (ZERO_CHANNEL = zeros); None = all of them, or (0, 1, zeros) for two.
    channel_order: tuple = None
    bit_depth: int = 0       # 8 or 16 = every file must have it; 0 = either
    source: str = ""         # the CSV the field was listed in
    # One CellProfiler illumination function (.npy, H x W float) per file in
    # `paths`, each file divided by its own before anything else; () = none.
    illum_paths: tuple = ()
    # Other metadata, ((name, value), ...) in CSV column order (LoadData's
    # Metadata_* columns beyond plate, well and site): not in the records yet.
    extra_metadata: tuple = ()
    # The CSV column of each file in `paths`, then of each in `illum_paths`,
    # for messages (() = not named: an index CSV's row names them).
    columns: tuple = ()

    def __post_init__(self):
        if self.label is None:
            label = classes.class_index(self.class_name) if self.class_name else UNLABELLED
            object.__setattr__(self, "label", label)

    @property
    def moa(self):
        """The class name under BBBC021's name for it (mechanism of action)."""
        return self.class_name

    @property
    def labelled(self):
        return self.label != UNLABELLED

    def metadata(self):
        """The string metadata of the project's record schema."""
        return {"class_name": self.class_name, "compound": self.compound,
                "concentration": self.concentration, "plate": self.plate,
                "well": self.well, "site": self.site, "replicate": self.replicate}

    def key(self):
        return (self.plate, self.well, self.site, self.row, self.source)

    def column_of(self, index):
        """`column 'X': ` naming the CSV column of file `index` (paths, then
        illum_paths), or '' if not known."""
        if index < len(self.columns) and self.columns[index]:
            return f"column {self.columns[index]!r}: "
        return ""

    def where(self):
        """`file:row` of the CSV line that listed the field ('' if unknown)."""
        if not self.source:
            return ""
        return f"{self.source}:{self.row}" if self.row else self.source


def csv_rows(path, required, error=ValueError, check_header=None):
    """[(line number, {column: stripped value})] of a CSV (or .csv.gz) with a header row.

    Raises `error` with one line naming the file (and row, or the missing
    columns) for a missing or malformed file, or a row without a value for a
    required column. `check_header(header)`, if given, returns more required
    columns (or raises its own error).
    """
    if not os.path.isfile(path):
        raise error(f"{path}: file not found")
    opener = gzip.open if path.endswith(".gz") else open  # JUMP ships well.csv.gz
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [name.strip() for name in (reader.fieldnames or [])]
            if check_header is not None:
                required = list(required) + list(check_header(header))
            missing = [c for c in required if c not in header]
            if missing:
                raise error(f"{path}: missing column(s) {', '.join(missing)}")
            reader.fieldnames = header
            rows = []
            for line, row in enumerate(reader, start=2):
                if None in row or any(row.get(c) is None for c in required):
                    raise error(f"{path}:{line}: wrong number of fields")
                rows.append((line, {k: (v or "").strip() for k, v in row.items()}))
            return rows
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a UTF-8 CSV file ({e.reason})") from None
    except csv.Error as e:
        raise error(f"{path}: malformed CSV ({e})") from None
    except (OSError, EOFError) as e:  # gzip: not a gzip file, truncated
        raise error(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def refuse_duplicates(fields, error=ValueError):
    """`fields`, or `error` naming both rows if two of them list the same files.

    Refused rather than dropped: a field converted twice sits in the data
    twice (possibly on both sides of the train/val split), and a repeated row
    is almost always a mistake in the CSV that dropping one would hide.
    """
    first_row = {}
    for field in fields:
        first = first_row.setdefault(tuple(os.path.normpath(p) for p in field.paths), field)
        if first is not field:
            raise error(f"{field.source}:{field.row}: the same field of view as "
                        f"{first.source}:{first.row} ({', '.join(field.paths)}): listed "
                        f"twice, it would be in the data twice; remove one of the rows")
    return fields
