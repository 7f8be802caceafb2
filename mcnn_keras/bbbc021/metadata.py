"""Reads BBBC021's two CSV files and joins them into labelled fields of view.

`BBBC021_v1_image.csv` has one row per field of view (three TIFF files: DAPI,
Tubulin, Actin); `BBBC021_v1_moa.csv` maps (compound, concentration) to a
mechanism of action. Rows without a match carry no label and are dropped.
Concentrations are joined by value (`float`), so "1", "1.0" and "1.00" match.

Usage:

    fields, unlabelled = read_fields("/data/BBBC021")   # labelled FieldOfView list
    fields[0].paths          # (dapi, tubulin, actin) file paths
    fields[0].metadata()     # dict for records.encode_example

Any problem (missing file or column, unknown class, unparsable site) raises
`BBBC021Error` with one line naming the file and row.
"""

import csv
import dataclasses
import os
import re

from mcnn_keras import classes

IMAGE_CSV = "BBBC021_v1_image.csv"
MOA_CSV = "BBBC021_v1_moa.csv"
# Channel order of every converted image: (DNA, tubulin, actin) = w1, w2, w4.
CHANNELS = ("DAPI", "Tubulin", "Actin")
CHANNEL_TOKENS = ("w1", "w2", "w4")
IMAGE_COLUMNS = (
    "TableNumber", "ImageNumber",
    "Image_FileName_DAPI", "Image_PathName_DAPI",
    "Image_FileName_Tubulin", "Image_PathName_Tubulin",
    "Image_FileName_Actin", "Image_PathName_Actin",
    "Image_Metadata_Plate_DAPI", "Image_Metadata_Well_DAPI",
    "Replicate", "Image_Metadata_Compound", "Image_Metadata_Concentration",
)
MOA_COLUMNS = ("compound", "concentration", "moa")
_SITE = re.compile(r"_s(\d+)_w\d")


class BBBC021Error(ValueError):
    """Bad input; the message is one line naming the culprit file/row."""


@dataclasses.dataclass(frozen=True)
class FieldOfView:
    """One labelled field of view: three TIFF paths plus its metadata."""
    plate: str
    well: str
    site: str
    replicate: str
    compound: str
    concentration: str
    moa: str
    paths: tuple  # (DAPI, Tubulin, Actin) absolute paths
    row: int      # line number in the image CSV (header = line 1)

    @property
    def label(self):
        return classes.class_index(self.moa)

    def metadata(self):
        """The string metadata of the project's record schema."""
        return {"class_name": self.moa, "compound": self.compound,
                "concentration": self.concentration, "plate": self.plate,
                "well": self.well, "site": self.site, "replicate": self.replicate}

    def key(self):
        return (self.plate, self.well, self.site, self.row)


def _read_csv(path, required):
    if not os.path.isfile(path):
        raise BBBC021Error(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [name.strip() for name in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise BBBC021Error(f"{path}: missing column(s) {', '.join(missing)}")
            reader.fieldnames = header
            rows = []
            for line, row in enumerate(reader, start=2):
                if None in row or any(row.get(c) is None for c in required):
                    raise BBBC021Error(f"{path}:{line}: wrong number of fields")
                rows.append((line, {k: (v or "").strip() for k, v in row.items()}))
            return rows
    except UnicodeDecodeError as e:
        raise BBBC021Error(f"{path}: not a UTF-8 CSV file ({e.reason})") from None
    except csv.Error as e:
        raise BBBC021Error(f"{path}: malformed CSV ({e})") from None


def concentration_key(text, where):
    """The join key of a concentration: its float value."""
    try:
        return float(text)
    except ValueError:
        raise BBBC021Error(f"{where}: concentration {text!r} is not a number") from None


def read_moa(path):
    """Returns {(compound, concentration value): moa} from the MoA CSV."""
    table = {}
    for line, row in _read_csv(path, MOA_COLUMNS):
        where = f"{path}:{line}"
        if row["moa"] not in classes.MOA_CLASSES:
            raise BBBC021Error(f"{where}: unknown mechanism-of-action class {row['moa']!r}")
        key = (row["compound"], concentration_key(row["concentration"], where))
        if table.get(key, row["moa"]) != row["moa"]:
            raise BBBC021Error(f"{where}: {key[0]} at {row['concentration']} "
                               f"has two classes ({table[key]!r}, {row['moa']!r})")
        table[key] = row["moa"]
    return table


def parse_site(file_name, where):
    """The site number ("1".."4") from a name like `Week1_150607_B02_s1_w1<UUID>.tif`."""
    match = _SITE.search(file_name)
    if not match:
        raise BBBC021Error(f"{where}: cannot parse the site (_s<N>_w) from file name {file_name!r}")
    return match.group(1)


def read_fields(bbbc021_dir, drop_dmso=False):
    """Joins the two CSVs; returns (labelled fields, number of unlabelled rows).

    Labelled fields are sorted by (plate, well, site, row). With `drop_dmso`
    the DMSO controls are dropped too (the 12-class protocol).
    """
    image_csv = os.path.join(bbbc021_dir, IMAGE_CSV)
    moa = read_moa(os.path.join(bbbc021_dir, MOA_CSV))
    fields, unlabelled = [], 0
    for line, row in _read_csv(image_csv, IMAGE_COLUMNS):
        where = f"{image_csv}:{line}"
        conc = row["Image_Metadata_Concentration"]
        label = moa.get((row["Image_Metadata_Compound"], concentration_key(conc, where)))
        if label is None:
            unlabelled += 1
            continue
        if drop_dmso and label == classes.DMSO:
            continue
        paths = []
        for channel in CHANNELS:
            name, folder = row[f"Image_FileName_{channel}"], row[f"Image_PathName_{channel}"]
            if not name:
                raise BBBC021Error(f"{where}: empty Image_FileName_{channel}")
            paths.append(os.path.join(bbbc021_dir, folder, name))
        plate, well = row["Image_Metadata_Plate_DAPI"], row["Image_Metadata_Well_DAPI"]
        if not plate or not well:
            raise BBBC021Error(f"{where}: empty plate or well")
        fields.append(FieldOfView(
            plate=plate, well=well,
            site=parse_site(row["Image_FileName_DAPI"], where),
            replicate=row["Replicate"], compound=row["Image_Metadata_Compound"],
            concentration=conc, moa=label, paths=tuple(paths), row=line))
    fields.sort(key=FieldOfView.key)
    return fields, unlabelled
