"""Writes a miniature BBBC021 download with the real layout, for tests and benchmarks.

Plate folders `Week<N>_<5-digit id>`; per field of view three single-channel
16-bit TIFFs `<Week>_<yymmdd>_<well>_s<site>_w<1|2|4><UUID>.tif` holding
12-bit data; `BBBC021_v1_image.csv` and `BBBC021_v1_moa.csv` with the real
columns. Every plate carries one well per labelled treatment (replicate =
plate number), `dmso_wells` DMSO wells and one well of a compound without a
mechanism of action. Pixels come from `synthetic.render_field` (so classes are
learnable), scaled to 12 bits and multiplied by a smooth illumination ramp
per plate x channel (so illumination correction matters).

Usage:

    summary = write_fixture("fixture", height=128, width=128, plates=2, seed=0)
    summary["labelled_fields"]     # {"Actin disruptors": 6, ..., "DMSO": 4}
"""

import csv
import io
import os
import uuid

import numpy as np
import tifffile
import tqdm

from mcnn_keras.io import atomic
from mcnn_keras.data import classes
from mcnn_keras.data.synthetic import generator as synthetic
from mcnn_keras.data.bbbc021 import metadata

CONCENTRATIONS = (0.1, 0.3, 1.0, 3.0, 10.0)
UNLABELLED_COMPOUNDS = ("bleomycin", "aphidicolin", "cytarabine")
WELL_ROWS, WELL_COLUMNS = "BCDEFG", range(2, 12)
MAX_12_BIT = 4095


def treatments(compounds_per_class=0):
    """[(compound, concentration, moa)] of the labelled treatments, DMSO excluded."""
    result = []
    for moa in classes.MOA_CLASSES:
        if moa == classes.DMSO:
            continue
        compounds = classes.COMPOUNDS_BY_CLASS[moa]
        if compounds_per_class:
            compounds = compounds[:compounds_per_class]
        for i, compound in enumerate(compounds):
            result.append((compound, CONCENTRATIONS[i % len(CONCENTRATIONS)], moa))
    return result


def illumination_ramp(height, width, rng):
    """A smooth linear ramp, 1 at the centre, +- 15..30 % at the edges."""
    angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.3)
    y = (np.arange(height) - (height - 1) / 2) / height * 2
    x = (np.arange(width) - (width - 1) / 2) / width * 2
    return 1 + strength * (np.cos(angle) * x[None, :] + np.sin(angle) * y[:, None]) / np.sqrt(2)


def to_12_bit(field, ramps, rng):
    """float [0, 1] H x W x 3 -> three uint16 planes of 12-bit camera data."""
    planes = []
    for c in range(3):
        signal = (110 + 3600 * field[..., c]) * ramps[c]
        noisy = signal + rng.normal(0, 6, signal.shape)
        planes.append(np.clip(np.rint(noisy), 0, MAX_12_BIT).astype(np.uint16))
    return planes


def _wells():
    for row in WELL_ROWS:
        for column in WELL_COLUMNS:
            yield f"{row}{column:02d}"


def write_fixture(output_dir, height=128, width=128, plates=2, seed=0, sites=2,
                  compounds_per_class=0, dmso_wells=2, compress=False, progress=True):
    """Writes the miniature download; returns a summary (labelled fields per class)."""
    if plates < 1 or sites < 1 or height < 8 or width < 8:
        raise ValueError("plates, sites must be >= 1 and height, width >= 8")
    rng = np.random.default_rng(seed)
    labelled = treatments(compounds_per_class)
    wells_per_plate = len(labelled) + dmso_wells + 1
    if wells_per_plate > len(WELL_ROWS) * len(WELL_COLUMNS):
        raise ValueError(f"{wells_per_plate} wells do not fit on a plate")
    os.makedirs(output_dir, exist_ok=True)
    image_rows, counts = [], dict.fromkeys(classes.MOA_CLASSES, 0)
    plate_ids = rng.choice(np.arange(20000, 50000), plates, replace=False)
    bar = tqdm.tqdm(total=plates * wells_per_plate * sites, desc="fixture",
                    unit="field", disable=not progress)
    for p in range(plates):
        week = p + 1
        folder = f"Week{week}_{plate_ids[p]}"
        prefix = f"Week{week}_{150607 + 7 * p:06d}"
        os.makedirs(os.path.join(output_dir, folder), exist_ok=True)
        ramps = [illumination_ramp(height, width, rng) for _ in range(3)]
        plate_wells = ([(c, conc, moa) for c, conc, moa in labelled]
                       + [(classes.DMSO, 0.0, classes.DMSO)] * dmso_wells
                       + [(UNLABELLED_COMPOUNDS[p % len(UNLABELLED_COMPOUNDS)], 1.0, None)])
        for well, (compound, conc, moa) in zip(_wells(), plate_wells):
            # Unlabelled compounds look like DMSO (they are no class of ours).
            label = classes.class_index(moa or classes.DMSO)
            for site in range(1, sites + 1):
                field = synthetic.render_field(label, height, width, rng)
                names = {}
                for channel, token, plane in zip(metadata.CHANNELS, metadata.CHANNEL_TOKENS,
                                                 to_12_bit(field, ramps, rng)):
                    uid = str(uuid.UUID(bytes=rng.bytes(16))).upper()
                    name = f"{prefix}_{well}_s{site}_{token}{uid}.tif"
                    path = os.path.join(output_dir, folder, name)
                    with atomic.atomic_file(path) as tmp:
                        tifffile.imwrite(tmp, plane, photometric="minisblack",
                                         compression="zlib" if compress else None)
                    names[channel] = name
                image_rows.append({
                    "TableNumber": p + 1, "ImageNumber": len(image_rows) + 1,
                    **{f"Image_FileName_{c}": names[c] for c in metadata.CHANNELS},
                    **{f"Image_PathName_{c}": folder for c in metadata.CHANNELS},
                    "Image_Metadata_Plate_DAPI": folder, "Image_Metadata_Well_DAPI": well,
                    "Replicate": p + 1, "Image_Metadata_Compound": compound,
                    "Image_Metadata_Concentration": repr(float(conc))})
                if moa:
                    counts[moa] += 1
                bar.update(1)
    bar.close()
    moa_rows = [{"compound": c, "concentration": repr(float(conc)), "moa": moa}
                for c, conc, moa in labelled] + [
        {"compound": classes.DMSO, "concentration": "0.0", "moa": classes.DMSO}]
    _write_csv(os.path.join(output_dir, metadata.IMAGE_CSV), metadata.IMAGE_COLUMNS, image_rows)
    _write_csv(os.path.join(output_dir, metadata.MOA_CSV), metadata.MOA_COLUMNS, moa_rows)
    return {"fields": len(image_rows), "labelled_fields": counts, "plates": plates,
            "height": height, "width": width}


def _write_csv(path, columns, rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text_atomic(path, text.getvalue())
