"""Synthetic BBBC021-like fields of view and TFRecord data sets made of them.

`render_field` draws one fluorescence field (channels DNA/DAPI, tubulin, actin)
of cells whose mechanism-of-action class shows only in their MORPHOLOGY: cell
shape and size, nucleus count, shape and fragmentation, filament versus
punctate texture, protrusions and how the cells are arranged. Each channel is
then brought to a random mean and standard deviation drawn the same way for
every class, so global per-channel statistics say next to nothing about the
class; a model has to look at shapes and textures.

Usage:

    rng = np.random.default_rng(0)
    field = render_field(classes.class_index("DMSO"), 128, 128, rng)  # float32 HxWx3
    summary = write_synthetic_dataset("data/synthetic", 128, 128, num_train=1300,
                                      num_val=260, num_shards=4, seed=1)
"""

import dataclasses
import os

import numpy as np
import tqdm

from mcnn_keras import classes
from mcnn_keras import records

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


def _place_cells(style, count, height, width, radius, rng):
    """Returns (count, 2) cell centres (y, x) and (count,) body angles."""
    angles = rng.uniform(0, np.pi, count)
    if style.arrangement == "clustered":  # a few tight groups
        groups = rng.uniform((0, 0), (height, width), (rng.integers(1, 4), 2))
        centres = groups[rng.integers(0, len(groups), count)]
        centres = centres + rng.normal(0, 1.6 * radius, (count, 2))
    elif style.arrangement == "sheet":  # one compact colony on a jittered hex lattice
        spacing = 1.75 * radius
        side = int(np.ceil(np.sqrt(count))) + 3
        j, i = np.meshgrid(np.arange(-side, side + 1), np.arange(-side, side + 1))
        lattice = np.stack([i * spacing * 0.866, (j + 0.5 * (i % 2)) * spacing], -1)
        lattice = lattice.reshape(-1, 2)
        nearest = np.argsort(np.hypot(*lattice.T) + rng.uniform(0, spacing, len(lattice)))
        centres = lattice[nearest[:count]] + rng.normal(0, 0.12 * spacing, (count, 2))
        centres = centres + rng.uniform((0, 0), (height, width))
    else:
        centres = rng.uniform((0, 0), (height, width), (count, 2))
        if style.arrangement == "aligned":  # one common direction, cells in a stream
            angles = rng.uniform(0, np.pi) + rng.normal(0, 0.12, count)
    return centres, angles


def _ridges(phase, sharpness):
    """Thin bright lines where `phase` crosses multiples of 2 pi."""
    return ((1 + np.cos(phase)) / 2) ** sharpness


def _draw_cell(fields, style, cy, cx, angle, radius, scale, rng):
    """Adds one cell to the (3, H, W) float32 `fields` (sharp, before blur)."""
    _, height, width = fields.shape
    aspect = rng.uniform(*style.aspect)
    a = radius * np.sqrt(aspect)  # half length along the body axis
    b = radius / np.sqrt(aspect)
    reach = a * (2.2 if style.actin == "protrusions" else 1.15) + 2
    y0, y1 = int(max(cy - reach, 0)), int(min(cy + reach + 1, height))
    x0, x1 = int(max(cx - reach, 0)), int(min(cx + reach + 1, width))
    if y0 >= y1 or x0 >= x1:
        return
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos  # along / across the body
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    theta = np.arctan2(v, u)
    edge = 1.2 * scale
    body = np.clip((1 - rho) * b / edge, 0, 1)
    if style.vacuoles:  # dark round holes in the cytoplasm
        for _ in range(rng.integers(3, 7)):
            r, t = rng.uniform(0.45, 0.8), rng.uniform(0, 2 * np.pi)
            hole = np.hypot(u - r * a * np.cos(t), v - r * b * np.sin(t))
            body = body * np.clip((hole - 0.17 * b) / edge, 0, 1)

    nr = style.nucleus * b  # nucleus radius
    na, nb = nr * rng.uniform(1.0, 1.25), nr
    if style.arrangement == "aligned":
        na = nr * 1.7
    dna = np.zeros_like(rho)
    nucleus = np.clip((1 - np.sqrt((u / na) ** 2 + (v / nb) ** 2)) * nb / edge, 0, 1)
    if style.dna == "multi":  # two to four nuclei side by side
        dna = np.zeros_like(rho)
        count = rng.integers(3, 6)
        for k in range(count):
            t = 2 * np.pi * k / count + rng.uniform(0, 1)
            r = 0.62 * nr
            dist = np.hypot(u - 1.1 * r * np.cos(t), v - 1.1 * r * np.sin(t))
            dna = np.maximum(dna, np.clip((0.62 * nr - dist) / edge, 0, 1))
        nucleus = dna
    elif style.dna == "ring":  # monoastral chromatin ring around a hole
        d = np.hypot(u, v)
        dna = np.clip((0.28 * nr - np.abs(d - 0.68 * nr)) / (0.7 * edge), 0, 1)
    elif style.dna == "fragments":  # condensed chromosomes: a cluster of blobs
        for _ in range(rng.integers(5, 9)):
            oy, ox = rng.normal(0, 0.5 * nr, 2)
            dist = np.hypot(u - ox, v - oy)
            dna = np.maximum(dna, np.clip((0.3 * nr - dist) / (0.6 * edge), 0, 1))
    else:
        dna = 0.75 * nucleus
        if style.dna == "foci":  # bright damage foci inside a large nucleus
            spots = np.zeros_like(rho)
            for _ in range(rng.integers(5, 10)):
                oy, ox = rng.uniform(-0.65, 0.65, 2) * (nb, na)
                spots = np.maximum(spots, np.exp(-((u - ox) ** 2 + (v - oy) ** 2)
                                                 / (2 * (0.9 * scale) ** 2)))
            dna = dna * 0.55 + 1.2 * spots * nucleus
        elif style.dna == "nucleoli":  # dark nucleoli in a large nucleus
            for _ in range(rng.integers(2, 4)):
                oy, ox = rng.uniform(-0.45, 0.45, 2) * (nb, na)
                hole = np.hypot(u - ox, v - oy)
                dna = dna * np.clip((hole - 0.22 * nr) / (0.6 * edge), 0.1, 1)
        elif style.dna == "micronuclei":  # small extra nuclei around the main one
            for _ in range(rng.integers(3, 6)):
                t, r = rng.uniform(0, 2 * np.pi), rng.uniform(1.3, 1.7) * nr
                dist = np.hypot(u - r * np.cos(t), v - r * np.sin(t))
                dna = np.maximum(dna, 0.9 * np.clip((0.3 * nr - dist) / (0.6 * edge), 0, 1))
    cyto = body * (1 - 0.7 * nucleus)

    # Tubulin: microtubules radiate from the centrosome unless the drug changed them.
    lines = int(rng.integers(10, 16))
    wobble = 0.3 * np.sin(rho * rng.uniform(3, 6) + rng.uniform(0, 6))
    radial = _ridges(lines * theta + wobble + rng.uniform(0, 6), 6)
    tubulin = cyto * (0.25 + 0.75 * radial)
    if style.tubulin == "bundles":  # thick straight bundles running along the cell
        bundles = _ridges(v * (2 * np.pi / (0.55 * b)) + rng.uniform(0, 6), 3)
        tubulin = body * (0.1 + 1.2 * bundles)
    elif style.tubulin == "diffuse":  # no filaments left: smooth cytoplasm
        tubulin = 0.6 * cyto
    elif style.tubulin == "aster":  # one bright spindle pole in the middle
        tubulin = 0.2 * body + 1.5 * np.exp(-(u ** 2 + v ** 2) / (2 * (0.3 * nr) ** 2))
        tubulin = tubulin + 0.6 * body * radial * (rho < 0.8)
    elif style.tubulin == "aggresome":  # perinuclear aggregate beside the nucleus
        t = rng.uniform(0, 2 * np.pi)
        oy, ox = 1.25 * nb * np.sin(t), 1.25 * na * np.cos(t)
        tubulin = tubulin + 1.6 * np.exp(-((u - ox) ** 2 + (v - oy) ** 2)
                                         / (2 * (0.3 * nr) ** 2))

    # Actin: cortex plus stress fibres, unless disrupted or remodelled.
    cortex = np.exp(-((rho - 0.92) / 0.09) ** 2) * (rho < 1.05)
    fibres = _ridges(v * (2 * np.pi / (0.35 * b)) + rng.uniform(0, 6), 8)
    actin = 0.6 * cortex + 0.15 * body + 0.5 * body * fibres * (rho < 0.85)
    if style.actin == "punctate":  # actin aggregates into dots, no fibres
        dots = np.zeros_like(rho)
        for _ in range(rng.integers(6, 12)):
            r, t = np.sqrt(rng.uniform(0.05, 0.8)), rng.uniform(0, 2 * np.pi)
            dots = np.maximum(dots, np.exp(-((u - r * a * np.cos(t)) ** 2
                                              + (v - r * b * np.sin(t)) ** 2)
                                            / (2 * (1.0 * scale) ** 2)))
        actin = 0.12 * body + 1.2 * dots
    elif style.actin == "rim":  # thick bright cortical rim only
        actin = 1.1 * np.exp(-((rho - 0.9) / 0.14) ** 2) * (rho < 1.1) + 0.1 * body
    elif style.actin == "protrusions":  # long thin spikes reaching out of the cell
        spikes = _ridges(int(rng.integers(5, 9)) * theta + rng.uniform(0, 6), 40)
        reach_mask = np.clip((2.1 - rho) / 0.3, 0, 1) * (rho > 0.6)
        actin = actin + 0.9 * spikes * reach_mask
        if style.tubulin == "protrusions":
            tubulin = tubulin * (rho < 1) + 0.6 * spikes * reach_mask

    gain = rng.uniform(0.7, 1.3, 3)  # cell-to-cell heterogeneity
    for channel, value in enumerate((dna, tubulin, actin)):
        patch = fields[channel, y0:y1, x0:x1]
        np.maximum(patch, gain[channel] * value, out=patch)


def _smooth(fields, sigma):
    """Gaussian blur of each (H, W) plane of `fields` by FFT (periodic edges)."""
    height, width = fields.shape[-2:]
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    transfer = np.exp(-2 * (np.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
    spectrum = np.fft.rfft2(fields) * transfer.astype(np.float32)
    return np.fft.irfft2(spectrum, s=(height, width)).astype(np.float32)


def render_field(class_index, height, width, rng):
    """Renders one field of view of class `class_index` as float32 H x W x 3.

    Channels are (DNA/DAPI, tubulin, actin), values in [0, 1]. Each channel's
    mean and standard deviation are set to random targets drawn identically
    for every class (then clipped to [0, 1]), so the class lives in the
    morphology only. `rng` is a `np.random.Generator`; the output is a pure
    function of its state.
    """
    style = STYLES[classes.MOA_CLASSES[class_index]]
    scale = max(1.0, min(height, width) / 256)  # bigger cells on bigger fields
    radius = BASE_CELL_RADIUS * scale
    # Same cell count distribution for every class, whatever its cell size.
    coverage = rng.uniform(*CELL_COVERAGE)
    count = max(2, int(rng.poisson(coverage * height * width / (np.pi * radius ** 2))))

    fields = np.zeros((3, height, width), np.float32)
    cell_radius = radius * style.radius
    centres, angles = _place_cells(style, count, height, width, cell_radius, rng)
    for (cy, cx), angle in zip(centres, angles):
        size = cell_radius * rng.uniform(0.85, 1.15)
        _draw_cell(fields, style, cy, cx, angle, size, scale, rng)

    # Optics and camera: uneven illumination, blur, shot-like and read noise.
    yy = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    tilt = rng.uniform(-0.15, 0.15, (3, 2)).astype(np.float32)
    fields *= 1 + tilt[:, :1, None] * yy + tilt[:, 1:, None] * xx
    fields = _smooth(fields, rng.uniform(0.7, 1.1) * scale)
    fields += (np.sqrt(np.maximum(fields, 0)) * 0.03
               * rng.standard_normal(fields.shape, np.float32))
    fields += 0.004 * rng.standard_normal(fields.shape, np.float32)

    # Class-independent exposure: random target mean and std per channel. The
    # low means put the background at or below zero, so it clips to black.
    mean = fields.mean(axis=(1, 2), keepdims=True)
    std = fields.std(axis=(1, 2), keepdims=True) + 1e-6
    target_mean = rng.uniform(0.03, 0.09, (3, 1, 1)).astype(np.float32)
    target_std = rng.uniform(0.1, 0.2, (3, 1, 1)).astype(np.float32)
    fields = (fields - mean) / std * target_std + target_mean
    return np.clip(fields, 0, 1).transpose(1, 2, 0).copy()


SPLITS = ("train", "val")
CONCENTRATIONS = ("0.1", "0.3", "1.0", "3.0", "10.0")
PLATE_WEEKS = tuple(range(1, 11))
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


def render_example(label, height, width, seed, split, index):
    """The serialized record of image `index` of `split`: a function of its arguments."""
    # One stream per image, so shards can be written one at a time, in any order.
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    image = to_uint8(render_field(int(label), height, width, rng))
    class_name = classes.MOA_CLASSES[int(label)]
    return records.encode_example(image, int(label), _metadata(class_name, rng))


def write_synthetic_dataset(output_dir, height, width, num_train, num_val, num_shards,
                            seed, compression="", num_val_shards=None, progress=True):
    """Writes `train-*.tfrecord` and `val-*.tfrecord` shards of synthetic fields.

    Classes are balanced (round-robin over the 13 classes, shuffled); image i
    goes to shard i % num_shards. Train and val use independent random
    streams, and the same arguments give byte-identical files. Each shard is
    written atomically and streamed, so memory holds one shard's worth of
    work at most. The val split gets `num_val_shards` shards (default
    max(1, num_shards // 2)).

    Returns a dict: {"train": {"count", "files", "class_counts"}, "val": {...}}.
    """
    if compression not in ("", "GZIP"):
        raise ValueError(f"compression must be '' or 'GZIP', got {compression!r}")
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if num_val_shards is None:
        num_val_shards = max(1, num_shards // 2)
    if num_val_shards < 1:
        raise ValueError(f"num_val_shards must be >= 1, got {num_val_shards}")
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("num_train", num_train), ("num_val", num_val)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    os.makedirs(output_dir, exist_ok=True)
    summary = {}
    with tqdm.tqdm(total=num_train + num_val, unit="img", desc="synthetic",
                   disable=not progress) as bar:
        for split, count, shards in (("train", num_train, num_shards),
                                     ("val", num_val, num_val_shards)):
            labels = split_labels(count, seed, split)

            def shard_records(shard, split=split, labels=labels, shards=shards):
                for index in range(shard, len(labels), shards):
                    yield render_example(labels[index], height, width, seed, split, index)
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
            }
    return summary
