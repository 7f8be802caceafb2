"""Reads BBBC021's two CSV files and joins them into labelled fields of view.

`BBBC021_v1_image.csv` has one row per field of view (three TIFF files: DAPI,
Tubulin, Actin); `BBBC021_v1_moa.csv` maps (compound, concentration) to a
mechanism of action. Rows without a match carry no label (the converter
counts and drops them). Concentrations are joined by value (`float`), so
"1", "1.0" and "1.00" match. Fields are `conversion.field.FieldOfView`, the
type every converter and the predictor share.

Usage:

    fields, unlabelled = read_fields("/data/BBBC021")   # labelled FieldOfView list
    fields[0].paths          # (dapi, tubulin, actin) file paths
    fields[0].metadata()     # dict for records.encode_example
    table = read_bbbc021_table("new/BBBC021_v1_image.csv")   # new plates: unlabelled

Any problem (missing file or column, unknown class, unparsable site) raises
`BBBC021Error` with one line naming the file and row.
"""

import os
import re

from mcnn_keras.data import classes
from mcnn_keras.data.conversion.field import FieldOfView, csv_rows, refuse_duplicates

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


def _read_csv(path, required):
    return csv_rows(path, required, BBBC021Error)


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


def read_bbbc021_table(image_csv, moa_csv=None):
    """Every row of a CSV in BBBC021's image-table format, as FieldOfView, in row order.

    Files are `<folder of image_csv>/<Image_PathName_*>/<Image_FileName_*>`,
    channels (DAPI, Tubulin, Actin), 16-bit. With `moa_csv` a row whose
    (compound, concentration) it lists is labelled with that mechanism of
    action; other rows (and every row without `moa_csv`: new plates) are
    unlabelled.
    """
    moa = read_moa(moa_csv) if moa_csv else {}
    root = os.path.dirname(image_csv)
    fields = []
    for line, row in _read_csv(image_csv, IMAGE_COLUMNS):
        where = f"{image_csv}:{line}"
        conc = row["Image_Metadata_Concentration"]
        label = moa.get((row["Image_Metadata_Compound"], concentration_key(conc, where))
                        ) if moa else None
        paths = []
        for channel in CHANNELS:
            name, folder = row[f"Image_FileName_{channel}"], row[f"Image_PathName_{channel}"]
            if not name:
                raise BBBC021Error(f"{where}: empty Image_FileName_{channel}")
            paths.append(os.path.join(root, folder, name))
        plate, well = row["Image_Metadata_Plate_DAPI"], row["Image_Metadata_Well_DAPI"]
        if not plate or not well:
            raise BBBC021Error(f"{where}: empty plate or well")
        fields.append(FieldOfView(
            plate=plate, well=well, site=parse_site(row["Image_FileName_DAPI"], where),
            replicate=row["Replicate"], compound=row["Image_Metadata_Compound"],
            concentration=conc, class_name=label or "", paths=tuple(paths), row=line,
            bit_depth=16, channel_order=(0, 1, 2), source=image_csv))
    return refuse_duplicates(fields, BBBC021Error)


def read_fields(bbbc021_dir, drop_dmso=False):
    """Joins the two CSVs; returns (labelled fields, number of unlabelled rows).

    Labelled fields are sorted by (plate, well, site, row). With `drop_dmso`
    the DMSO controls are dropped too (the 12-class protocol).
    """
    fields = read_bbbc021_table(os.path.join(bbbc021_dir, IMAGE_CSV),
                                os.path.join(bbbc021_dir, MOA_CSV))
    labelled = [f for f in fields if f.labelled]
    unlabelled = len(fields) - len(labelled)
    if drop_dmso:
        labelled = [f for f in labelled if f.class_name != classes.DMSO]
    return sorted(labelled, key=FieldOfView.key), unlabelled
