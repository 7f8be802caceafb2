"""A miniature Cell Painting Gallery screen with the real layout, for tests.

Per plate (one source, one batch), exactly where the Gallery keeps them
(broadinstitute.github.io/cellpainting-gallery/data_structure.html):

    <source>/images/<batch>/images/<plate>__<date>-Measurement1/Images/
        r01c01f01p01-ch1sk1fk1fl1.tiff       Phenix names: row, column, field (site),
                                             plane, channel; 16-bit, one channel each
    <source>/images/<batch>/illum/<plate>/<plate>_Illum<Ch>.npy
                                             CellProfiler illumination functions
    <source>/workspace/load_data_csv/<batch>/<plate>/load_data.csv
    <source>/workspace/load_data_csv/<batch>/<plate>/load_data_with_illum.csv

The LoadData columns: FileName_Orig<Ch>, PathName_Orig<Ch> for Ch in DNA, ER,
RNA, AGP, Mito (channels ch5, ch4, ch3, ch2, ch1 as in cpg0000's source_4),
Metadata_Source, Metadata_Batch, Metadata_Plate, Metadata_Well,
Metadata_Site; the `_with_illum` CSV adds FileName_Illum<Ch>,
PathName_Illum<Ch>. PathName is relative to the CSV's folder, absolute, or
an s3:// URL (`path_style`). JUMP's label tables (jump-cellpainting/datasets
metadata/): plate.csv, well.csv (Metadata_Source, Metadata_Plate,
Metadata_Well, Metadata_JCP2022), compound.csv.

Every plate has the wells of `WELLS`: a DMSO well, two compound wells and a
well that well.csv does not list (unlabelled). Pixels: the synthetic Cell
Painting renderer (`synthetic.generator.render_cell_painting_field`, the
compound's mechanism of action as its class) when it exists, else simple
blobs with class-dependent sizes; 12-bit values times a smooth per plate x
channel illumination ramp, which the `.npy` functions hold exactly.

Usage:

    screen = write_gallery(tmp_path, plates=2, sites=2, size=64)
    screen["plates"][0]["load_data"]      # .../load_data_csv/<batch>/<plate>/load_data.csv
    screen["well"]                        # .../metadata/well.csv
"""

import csv
import os

import numpy as np
import tifffile

SOURCE, BATCH = "source_4", "2021_04_26_Batch1"
CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
PHENIX_CHANNEL = {"Mito": 1, "AGP": 2, "RNA": 3, "ER": 4, "DNA": 5}  # cpg0000 source_4
DMSO_ID = "JCP2022_033924"  # JUMP's DMSO
# well -> (JCP2022 id or None = not in well.csv, mechanism of action for the pixels)
WELLS = {"A01": (DMSO_ID, "DMSO"), "A02": ("JCP2022_000101", "Microtubule destabilizers"),
         "A03": ("JCP2022_000202", "Actin disruptors"), "A04": (None, "DMSO")}
COMPOUNDS = {DMSO_ID: ("IAZDPXIOMUYVGZ-UHFFFAOYSA-N", "InChI=1S/C2H6OS/c1-4(2)3/h1-2H3",
                       "CS(C)=O"),
             "JCP2022_000101": ("AAAAAAAAAAAAAA-UHFFFAOYSA-N", "InChI=1S/X", "C"),
             "JCP2022_000202": ("BBBBBBBBBBBBBB-UHFFFAOYSA-N", "InChI=1S/Y", "CC")}
MAX_12_BIT = 4095


def _render(moa, size, rng):
    """float32 size x size x 5 in [0, 1] (DNA, ER, RNA, AGP, Mito)."""
    try:
        from mcnn_keras.data import classes  # pylint: disable=import-outside-toplevel
        from mcnn_keras.data.synthetic.generator import (  # pylint: disable=import-outside-toplevel
            render_cell_painting_field)
    except ImportError:
        return _blobs(moa, size, rng)
    return render_cell_painting_field(classes.MOA_CLASSES.index(moa), size, size, rng)


def _blobs(moa, size, rng):
    """Simple content: cells as Gaussian blobs, bigger nuclei / wider rings per class."""
    radius = {"DMSO": 3.0, "Microtubule destabilizers": 5.0}.get(moa, 4.0)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    field = np.zeros((size, size, 5), np.float32)
    for cy, cx in rng.uniform(6, size - 6, (6, 2)):
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        for c, scale in enumerate((1.0, 2.0, 1.4, 2.6, 1.8)):
            field[..., c] += np.exp(-d2 / (2 * (radius * scale) ** 2))
    return np.clip(field / field.max(axis=(0, 1)), 0, 1)


def illumination(size, plate_index):
    """The plate's true illumination per channel: size x size x 5, positive ramps."""
    y = np.linspace(-1, 1, size, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, size, dtype=np.float32)[None, :]
    ramps = [1 + 0.25 * x * (1 + 0.1 * c) - 0.2 * y * (1 - 0.1 * plate_index)
             for c in range(len(CHANNELS))]
    return np.stack(ramps, -1).astype(np.float32)


def phenix_name(well, site, channel):
    row, column = "ABCDEFGHIJKLMNOP".index(well[0]) + 1, int(well[1:])
    return f"r{row:02d}c{column:02d}f{site:02d}p01-ch{PHENIX_CHANNEL[channel]}sk1fk1fl1.tiff"


def _path_name(folder, csv_dir, path_style):
    if path_style == "relative":
        return os.path.relpath(folder, csv_dir)
    if path_style == "s3":
        rest = folder.split(f"{os.sep}{SOURCE}{os.sep}", 1)[-1].replace(os.sep, "/")
        return f"s3://cellpainting-gallery/cpg0016-jump/{SOURCE}/{rest}"
    return folder


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_gallery_plate(root, plate, plate_index=0, sites=2, size=64, seed=0,
                        path_style="relative"):
    """One plate's images, illumination functions and both LoadData CSVs.

    Returns {"plate", "images_dir", "illum": {Ch: .npy}, "load_data",
    "load_data_with_illum", "fields": {(well, site): {Ch: uint16 image}}}.
    """
    base = os.path.join(str(root), SOURCE)
    images_dir = os.path.join(base, "images", BATCH, "images",
                              f"{plate}__2021-04-27T10_00_00-Measurement1", "Images")
    illum_dir = os.path.join(base, "images", BATCH, "illum", plate)
    csv_dir = os.path.join(base, "workspace", "load_data_csv", BATCH, plate)
    for folder in (images_dir, illum_dir, csv_dir):
        os.makedirs(folder, exist_ok=True)
    light = illumination(size, plate_index)
    illum = {}
    for c, channel in enumerate(CHANNELS):
        illum[channel] = os.path.join(illum_dir, f"{plate}_Illum{channel}.npy")
        np.save(illum[channel], light[..., c])
    rng = np.random.default_rng([seed, plate_index])
    fields, rows = {}, []
    for well, (_, moa) in WELLS.items():
        for site in range(1, sites + 1):
            pixels = _render(moa, size, rng) * (MAX_12_BIT - 200) + 100
            raw = np.rint(pixels * light).clip(0, 65535).astype(np.uint16)
            fields[(well, str(site))] = {ch: raw[..., c] for c, ch in enumerate(CHANNELS)}
            row = []
            for c, channel in enumerate(CHANNELS):
                name = phenix_name(well, site, channel)
                tifffile.imwrite(os.path.join(images_dir, name), raw[..., c],
                                 photometric="minisblack")
                row += [name, _path_name(images_dir, csv_dir, path_style)]
            rows.append(row + [SOURCE, BATCH, plate, well, str(site)])
    header = [f"{kind}_Orig{ch}" for ch in CHANNELS for kind in ("FileName", "PathName")]
    header += ["Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well",
               "Metadata_Site"]
    illum_header = [f"{kind}_Illum{ch}" for ch in CHANNELS for kind in ("FileName", "PathName")]
    illum_row = [v for ch in CHANNELS for v in (
        os.path.basename(illum[ch]), _path_name(illum_dir, csv_dir, path_style))]
    return {"plate": plate, "images_dir": images_dir, "illum": illum, "fields": fields,
            "load_data": _write_csv(os.path.join(csv_dir, "load_data.csv"), header, rows),
            "load_data_with_illum": _write_csv(
                os.path.join(csv_dir, "load_data_with_illum.csv"), header + illum_header,
                [row + illum_row for row in rows])}


def write_jump_tables(root, plates):
    """JUMP's plate.csv, well.csv and compound.csv for `plates` -> {name: path}."""
    folder = os.path.join(str(root), "datasets", "metadata")
    os.makedirs(folder, exist_ok=True)
    wells = [[SOURCE, plate, well, jcp] for plate in plates
             for well, (jcp, _) in WELLS.items() if jcp]
    return {
        "plate": _write_csv(os.path.join(folder, "plate.csv"), [
            "Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_PlateType"],
            [[SOURCE, BATCH, plate, "COMPOUND"] for plate in plates]),
        "well": _write_csv(os.path.join(folder, "well.csv"), [
            "Metadata_Source", "Metadata_Plate", "Metadata_Well", "Metadata_JCP2022"], wells),
        "compound": _write_csv(os.path.join(folder, "compound.csv"), [
            "Metadata_JCP2022", "Metadata_InChIKey", "Metadata_InChI", "Metadata_SMILES"],
            [[jcp, *rest] for jcp, rest in COMPOUNDS.items()]),
    }


def write_gallery(root, plates=2, sites=2, size=64, seed=0, path_style="relative"):
    """`plates` plates (BR00121331, BR00121332, ...) and JUMP's tables ->
    {"plates": [write_gallery_plate dicts], "plate", "well", "compound"}."""
    names = [f"BR0012133{i + 1}" for i in range(plates)]
    written = [write_gallery_plate(root, name, i, sites, size, seed, path_style)
               for i, name in enumerate(names)]
    return {"plates": written, **write_jump_tables(root, names)}
