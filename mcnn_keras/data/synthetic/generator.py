"""Synthetic BBBC021-like or Cell Painting-like fields and TFRecord sets of them.

`render_field` draws one fluorescence field (channels DNA/DAPI, tubulin, actin;
with `stains="cell_painting"` the five DNA, ER, RNA, AGP, Mito) of cells whose
mechanism-of-action class shows only in their MORPHOLOGY: cell shape and
size, nucleus count, shape and fragmentation, filament versus punctate
texture (for Cell Painting also each organelle's pattern: `cell_painting`),
protrusions and how the cells are arranged. Each channel is then brought to
a random mean and standard deviation drawn the same way for every class, so
global per-channel statistics say next to nothing about the class; a model
has to look at shapes and textures.

A linear model on per-channel mean and std (`probe.linear_probe_accuracy`)
reaches about 24 % (chance 7.7 %) at 128 x 128 and 27 % at 1024 x 1280; on
the five Cell Painting stains 25 % at 64 x 64, 30 % at 128 x 128, 32 % at
512 x 512 and 24 % at 1080 x 1080 (the last two on 30 + 10 fields per class).
`python tests/test_synthetic.py --height=1024 --width=1280
[--difficulty=hard] [--stains=cell_painting]` measures it at any size.

One cell's placement and drawing live in `cells` (a Cell Painting cell's in
`cell_painting`), a field's microscope, noise and exposure in `optics`.
`Difficulty` (module `difficulty`: `Difficulty`, `DIFFICULTIES`,
`make_difficulty`, `make_plates`) adds what makes real screens harder:
incomplete penetrance, plate effects, DMSO-like treated fields; its defaults
change nothing (the files stay byte-identical).

Usage:

    rng = np.random.default_rng(0)
    field = render_field(classes.class_index("DMSO"), 128, 128, rng)  # float32 HxWx3
    summary = write_synthetic_dataset("data/synthetic", 128, 128, num_train=1300,
                                      num_val=260, num_shards=4, seed=1)
    hard = make_difficulty("hard", penetrance=0.5)      # a preset, one option changed
    truth = {}
    render_field(3, 128, 128, rng, hard, make_plates(1, 1.0)[0], truth)
    truth["phenotype"]                                  # one bool per cell
    render_field(3, 128, 128, rng, stains="cell_painting")  # float32 HxWx5
    write_synthetic_dataset("data/cp", 128, 128, 1300, 260, 4, seed=1,
                            stains="cell_painting")     # + manifest.json
"""

import dataclasses
import os

import numpy as np
import tqdm

from mcnn_keras.data import classes
from mcnn_keras.io import storage
from mcnn_keras.data.manifest import MANIFEST  # what mcnn-train reads back
from mcnn_keras.data.synthetic import cell_painting
from mcnn_keras.data.synthetic import difficulty as _difficulty
from mcnn_keras.data.synthetic.cells import draw_cell, place_cells
from mcnn_keras.data.synthetic.optics import camera, expose
from mcnn_keras.data.synthetic.difficulty import DIFFICULTIES, PLATE_WEEKS, make_plates
Difficulty, make_difficulty = _difficulty.Difficulty, _difficulty.make_difficulty  # re-exported

BASE_CELL_RADIUS = 11.0  # pixels at 128 x 128; grows with larger fields
CELL_COVERAGE = (0.25, 0.6)  # fraction of the field covered by cells, all classes


@dataclasses.dataclass(frozen=True)
class CellStyle:
    """How the cells of one class look (radii are relative to the base radius)."""

    radius: float = 1.0
    aspect: tuple = (1.1, 1.6)  # major / minor axis of the cell body
    nucleus: float = 0.45  # nucleus radius / cell minor radius
    dna: str = "oval"  # oval, multi, foci, ring, fragments, micronuclei, nucleoli
    tubulin: str = "radial"  # radial, bundles, diffuse, aster, aggresome, protrusions
    actin: str = "cortex"  # cortex, punctate, rim, protrusions
    arrangement: str = "random"  # random, clustered, sheet, aligned
    vacuoles: bool = False


STYLES = {
    "Actin disruptors": CellStyle(actin="punctate"),
    "Aurora kinase inhibitors": CellStyle(radius=1.55, aspect=(1.0, 1.3), nucleus=0.5,
                                          dna="multi"),
    "Cholesterol-lowering": CellStyle(radius=1.1, aspect=(2.8, 3.8), nucleus=0.7,
                                      arrangement="aligned"),
    "DNA damage": CellStyle(radius=1.1, aspect=(1.4, 1.9), nucleus=0.65, dna="foci"),
    "DNA replication": CellStyle(radius=0.9, aspect=(1.0, 1.3), nucleus=0.72,
                                 dna="nucleoli", arrangement="clustered"),
    "Eg5 inhibitors": CellStyle(radius=0.85, aspect=(1.0, 1.1), nucleus=0.7,
                                dna="ring", tubulin="aster", actin="rim"),
    "Epithelial": CellStyle(radius=0.95, aspect=(1.0, 1.25), tubulin="diffuse",
                            actin="rim", arrangement="sheet"),
    "Kinase inhibitors": CellStyle(radius=0.8, aspect=(1.0, 1.3), tubulin="protrusions",
                                   actin="protrusions"),
    "Microtubule destabilizers": CellStyle(radius=0.85, aspect=(1.0, 1.15), nucleus=0.6,
                                           dna="fragments", tubulin="diffuse", actin="rim"),
    "Microtubule stabilizers": CellStyle(dna="micronuclei", tubulin="bundles"),
    "Protein degradation": CellStyle(tubulin="aggresome", vacuoles=True),
    "Protein synthesis": CellStyle(radius=0.65, aspect=(1.0, 1.3), nucleus=0.6,
                                   tubulin="diffuse"),
    classes.DMSO: CellStyle(),
}
CONTROL = STYLES[classes.DMSO]


BBBC021_CHANNELS = ("DAPI", "Tubulin", "Actin")  # the BBBC021 converter's names


def _draw_bbbc021_cell(fields, style, cy, cx, angle, radius, scale, rng, masks=None):
    """`cells.draw_cell` (its ground truth has no masks)."""
    del masks
    draw_cell(fields, style, cy, cx, angle, radius, scale, rng)


@dataclasses.dataclass(frozen=True)
class StainSet:
    """What a `stains` name draws: channel names, class styles, one cell's drawing."""

    channels: tuple
    styles: dict  # class name -> style (CellStyle or CellPaintingStyle)
    draw: object  # draw(fields, style, cy, cx, angle, radius, scale, rng, masks)
    masks: bool  # whether `truth` gets "nuclei", "cells" and "cytoplasm" masks


STAINS = {
    "bbbc021": StainSet(BBBC021_CHANNELS, STYLES, _draw_bbbc021_cell, False),
    "cell_painting": StainSet(cell_painting.CELL_PAINTING_CHANNELS, cell_painting.STYLES,
                              cell_painting.draw_cell_painting_cell, True),
}


def stain_set(stains):
    """The `StainSet` named `stains` (ValueError naming --stains otherwise)."""
    if stains not in STAINS:
        raise ValueError(f"--stains={stains!r}: expected one of {list(STAINS)}")
    return STAINS[stains]


def _draw_cells(fields, stain, style, radius, scale, rng, difficulty, masks):
    """Places and draws a field's cells; returns each cell's `responds` flag."""
    _, height, width = fields.shape
    control = stain.styles[classes.DMSO]
    # Same cell count distribution for every class, whatever its cell size.
    coverage = rng.uniform(*CELL_COVERAGE)
    count = max(2, int(rng.poisson(coverage * height * width / (np.pi * radius ** 2))))
    centres, angles = place_cells(style, count, height, width, radius * style.radius, rng)
    responding = []
    for (cy, cx), angle in zip(centres, angles):
        responds = difficulty.penetrance >= 1 or rng.random() < difficulty.penetrance
        cell_style = style if responds else control  # a non-responder is a DMSO cell
        size = radius * cell_style.radius * rng.uniform(0.85, 1.15)
        stain.draw(fields, cell_style, cy, cx, angle, size, scale, rng, masks)
        responding.append(responds)
    return responding


def render_field(class_index, height, width, rng, difficulty=None, plate=None,
                 truth=None, stains="bbbc021"):
    """Renders one field of view of class `class_index` as float32 H x W x C.

    `stains`: "bbbc021" (C = 3: DNA/DAPI, tubulin, actin) or "cell_painting"
    (C = 5: DNA, ER, RNA, AGP, Mito; see `cell_painting`). Values in [0, 1].
    Each channel's mean and standard deviation are set to random targets
    drawn identically for every class (then clipped to [0, 1]), so the class
    lives in the morphology only. `rng` is a `np.random.Generator`; the output
    is a pure function of its state (and of `difficulty`, a `Difficulty`, and
    `plate`, a `Plate` or None). A dict `truth` receives the ground truth:
    `dmso_like` and `phenotype` (per cell: shows the treatment's phenotype);
    for Cell Painting also `nuclei`, `cells` and `cytoplasm`, H x W bool masks
    of the chromatin, the cell bodies and the cytoplasm (body minus nucleus)
    of any cell (sharp, before the blur; cells may overlap).
    """
    stain = stain_set(stains)
    difficulty = difficulty or DIFFICULTIES["default"]
    treated = classes.MOA_CLASSES[class_index] != classes.DMSO
    # Defaults draw nothing extra, so default files stay byte-identical.
    dmso_like = (difficulty.dmso_like_fraction > 0
                 and rng.random() < difficulty.dmso_like_fraction and treated)
    style = stain.styles[classes.DMSO if dmso_like else classes.MOA_CLASSES[class_index]]
    scale = max(1.0, min(height, width) / 256)  # bigger cells on bigger fields
    fields = np.zeros((len(stain.channels), height, width), np.float32)
    masks = (np.zeros((3, height, width), np.float32)
             if stain.masks and truth is not None else None)
    responding = _draw_cells(fields, stain, style, BASE_CELL_RADIUS * scale, scale, rng,
                             difficulty, masks)
    if truth is not None:
        truth.update(dmso_like=bool(dmso_like), phenotype=[
            bool(responds and treated and not dmso_like) for responds in responding])
        if masks is not None:
            truth.update(nuclei=masks[0] > 0.5, cells=masks[1] > 0.5,
                         cytoplasm=masks[2] > 0.5)
    # Optics and camera: uneven illumination, blur, shot-like and read noise;
    # then the class-independent exposure (and the plate's brightness).
    return expose(camera(fields, scale, rng), rng, plate)


def render_cell_painting_field(class_index, height, width, rng, difficulty=None, plate=None,
                               truth=None):
    """`render_field(..., stains="cell_painting")`: float32 H x W x 5 in [0, 1].

        truth = {}
        field = render_cell_painting_field(0, 128, 128, np.random.default_rng(0), truth=truth)
        field[..., 4], truth["nuclei"]       # Mito (CELL_PAINTING_CHANNELS), nuclei
    """
    return render_field(class_index, height, width, rng, difficulty, plate, truth,
                        stains="cell_painting")


SPLITS = ("train", "val")
CONCENTRATIONS = ("0.1", "0.3", "1.0", "3.0", "10.0")
WELL_ROWS = "BCDEFG"


def _metadata(class_name, rng):
    """Plausible BBBC021-style metadata for one synthetic field."""
    compounds = classes.COMPOUNDS_BY_CLASS[class_name]
    week = int(rng.choice(PLATE_WEEKS))
    return {
        "class_name": class_name,
        "compound": compounds[int(rng.integers(len(compounds)))],
        "concentration": "0.0" if class_name == classes.DMSO else str(rng.choice(CONCENTRATIONS)),
        "plate": f"Week{week}_{int(rng.integers(20000, 50000)):05d}",
        "well": f"{WELL_ROWS[int(rng.integers(len(WELL_ROWS)))]}{int(rng.integers(2, 12)):02d}",
        "site": str(int(rng.integers(1, 5))),
        "replicate": str(int(rng.integers(1, 4))),
    }


def to_uint8(field):
    """Converts a float [0, 1] field to the uint8 pixels the records store."""
    return np.round(np.clip(field, 0, 1) * 255).astype(np.uint8)


def split_labels(num_images, seed, split):
    """Balanced labels of one split: round-robin over the classes, shuffled."""
    labels = np.arange(num_images) % classes.NUM_CLASSES
    return np.random.default_rng([seed, SPLITS.index(split)]).permutation(labels)


def render_example(label, height, width, seed, split, index, difficulty=None, truth=None,
                   stains="bbbc021"):
    """The serialized record of image `index` of `split`: a function of its arguments.

    A dict `truth` receives the field's ground truth (see `render_field`);
    `stains` picks the channels (see `render_field`).
    """
    # records imports TensorFlow; the binaries' --help imports this module.
    from mcnn_keras.io import records  # pylint: disable=import-outside-toplevel
    # One stream per image, so shards can be written one at a time, in any order.
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    difficulty = difficulty or DIFFICULTIES["default"]
    plates = make_plates(seed, difficulty.plate_effects) if difficulty.plate_effects else None
    plate = plates[int(rng.integers(len(plates)))] if plates else None
    truth = {} if truth is None else truth
    image = to_uint8(render_field(int(label), height, width, rng, difficulty, plate, truth,
                                  stains))
    class_name = classes.MOA_CLASSES[int(label)]
    metadata = _metadata(class_name, rng)
    if difficulty.dmso_like_fraction and class_name != classes.DMSO:
        # The lowest dose is the inactive one, and only inactive fields have it.
        metadata["concentration"] = (CONCENTRATIONS[0] if truth["dmso_like"]
                                     else str(rng.choice(CONCENTRATIONS[1:])))
    if plate is not None:
        metadata["plate"] = plate.name
    return records.encode_example(image, int(label), metadata)


def _check_dataset_arguments(height, width, num_train, num_val, num_shards, num_val_shards,
                             compression, stains):
    """ValueError naming the first bad argument of `write_synthetic_dataset`."""
    stain_set(stains)
    if compression not in ("", "GZIP"):
        raise ValueError(f"compression must be '' or 'GZIP', got {compression!r}")
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if num_val_shards < 1:
        raise ValueError(f"num_val_shards must be >= 1, got {num_val_shards}")
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("num_train", num_train), ("num_val", num_val)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")




def _manifest(summary, height, width, seed, compression, difficulty, stains):
    """The manifest.json of a written set: what `mcnn-train` reads (channels,
    classes, image size) and how it was made. File names are relative, so the
    same arguments give the same bytes wherever the set is written."""
    return {
        "format": "mcnn-keras/synthetic-tfrecord/1",
        "stains": stains,
        "channels": list(stain_set(stains).channels),
        "classes": list(classes.MOA_CLASSES), "num_classes": classes.NUM_CLASSES,
        "image_size": [height, width], "height": height, "width": width,
        "seed": seed, "compression": compression,
        "difficulty": dataclasses.asdict(difficulty or DIFFICULTIES["default"]),
        "counts": {split: {**s, "files": [os.path.basename(f) for f in s["files"]]}
                   for split, s in summary.items()},
    }


def write_synthetic_dataset(output_dir, height, width, num_train, num_val, num_shards,
                            seed, compression="", num_val_shards=None, progress=True,
                            difficulty=None, stains="bbbc021"):
    """Writes `train-*.tfrecord` and `val-*.tfrecord` shards of synthetic fields.

    Classes are balanced (round-robin over the 13 classes, shuffled); image i
    goes to shard i % num_shards. Train and val use independent random
    streams, and the same arguments give byte-identical files. Each shard is
    written atomically and streamed, so memory holds one shard's worth of
    work at most. The val split gets `num_val_shards` shards (default
    max(1, num_shards // 2)). `difficulty`: a `Difficulty` (None = default).
    `stains`: "bbbc021" (H x W x 3 records) or "cell_painting" (H x W x 5).
    Last, `manifest.json` (atomic; see `_manifest`): the channel names in
    order, the class names in label order, the image size, the counts.

    Returns a dict: {"train": {"count", "files", "class_counts", "dmso_like"},
    "val": {...}}; `dmso_like` counts the treated fields that look like DMSO.
    """
    from mcnn_keras.io import atomic, records  # pylint: disable=import-outside-toplevel
    num_val_shards = max(1, num_shards // 2) if num_val_shards is None else num_val_shards
    _check_dataset_arguments(height, width, num_train, num_val, num_shards, num_val_shards,
                             compression, stains)
    if not storage.is_remote(output_dir):  # object stores have no directories
        os.makedirs(output_dir, exist_ok=True)
    summary = {}
    with tqdm.tqdm(total=num_train + num_val, unit="img", desc="synthetic",
                   disable=not progress) as bar:
        for split, count, shards in (("train", num_train, num_shards),
                                     ("val", num_val, num_val_shards)):
            labels = split_labels(count, seed, split)
            dmso_like = []

            def shard_records(shard, split=split, labels=labels, shards=shards,
                              dmso_like=dmso_like):
                for index in range(shard, len(labels), shards):
                    truth = {}
                    yield render_example(labels[index], height, width, seed, split,
                                         index, difficulty, truth, stains)
                    dmso_like.append(truth["dmso_like"])
                    bar.update(1)

            files = []
            for shard in range(shards):
                path = os.path.join(output_dir, records.shard_name(split, shard, shards))
                records.write_shard(path, shard_records(shard), compression)
                files.append(path)
            summary[split] = {
                "count": count,
                "files": files,
                "class_counts": np.bincount(labels, minlength=classes.NUM_CLASSES).tolist(),
                "dmso_like": int(sum(dmso_like)),
            }
    atomic.write_json_atomic(os.path.join(output_dir, MANIFEST), _manifest(
        summary, height, width, seed, compression, difficulty, stains))
    return summary
