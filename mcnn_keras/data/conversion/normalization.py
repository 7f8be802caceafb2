"""Normalising raw fields: illumination correction and percentile scaling.

Per plate x channel, from every labelled field of the plate (first pass):

1. Illumination map: the mean image, block-averaged by `block` pixels, blurred
   with a wide Gaussian (`sigma` pixels, 500 at 1024 x 1280; odd reflection at
   the borders so a linear illumination ramp survives the blur unchanged),
   upsampled bilinearly to full size, floored at the 0.02nd percentile of its
   positive values and divided by that floor (so the map is >= 1).
2. Intensity range: the 0.1st and 99.9th percentiles of the corrected images,
   sampled on a stride-4 pixel grid (offset 2).

Second pass, per field: divide by the map, map [low, high] to [0, 1], clip,
store round(x * 255) as uint8, channels in the model's order (any number C:
DAPI, Tubulin, Actin for BBBC021; DNA, ER, RNA, AGP, Mito for Cell Painting).
A channel that is zero everywhere on a plate (the third channel of a
two-channel screen) stays zero: map 1, range [0, 1]. Any other channel
without an intensity range is an error.

Fields already divided by CellProfiler's illumination functions (LoadData's
`FileName_Illum*`, `--illum=cellprofiler`) get no map of ours
(`StatisticsAccumulator(..., estimate_map=False)`: the map is exactly 1, the
percentiles are those of the corrected fields), and normalization.json says
so (`"illumination": "cellprofiler"`).

Usage:

    raw = images.read_raw_field(field, 1024, 1280)        # uint16 H x W x C
    stats = plate_statistics([raw, ...], sigma=500)       # PlateStats
    image = to_uint8(normalize(raw, stats))               # uint8 H x W x C

The statistics are saved with the converted data (`save_statistics`) so the same
normalisation can be applied at inference (`load_statistics`).
"""

import dataclasses
import io
import json
import os

import numpy as np

from mcnn_keras.io import atomic
from mcnn_keras.io import storage

FLOOR_PERCENTILE = 0.02
LOW_PERCENTILE, HIGH_PERCENTILE = 0.1, 99.9
SAMPLE_STRIDE = 4
FULL_HEIGHT, DEFAULT_SIGMA = 1024, 500.0


def illumination_block(height, width):
    """The block size of the map: the largest of 16..1 dividing both sides
    that leaves at least 8 blocks along the shorter side."""
    for block in (16, 8, 4, 2):
        if height % block == 0 and width % block == 0 and min(height, width) // block >= 8:
            return block
    return 1


def default_sigma(height):
    """500 pixels at the real 1024-pixel height, proportionally smaller below."""
    return DEFAULT_SIGMA * height / FULL_HEIGHT


def block_mean(image, block):
    """Averages non-overlapping block x block tiles of a H x W (x C) array."""
    h, w = image.shape[0] // block, image.shape[1] // block
    tiles = image.reshape(h, block, w, block, *image.shape[2:]).astype(np.float64)
    return tiles.mean(axis=(1, 3))


def blur_matrix(size, sigma):
    """size x size matrix of a 1-D Gaussian blur with odd-reflected borders."""
    if sigma <= 0 or size == 1:
        return np.eye(size)
    radius = int(np.ceil(4 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(np.eye(size), ((radius, radius), (0, 0)), mode="reflect",
                    reflect_type="odd")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=0)
    return np.einsum("icr,r->ic", windows, taps)


def upsample_matrix(size, block):
    """(size * block) x size bilinear upsampling, pixel centres aligned,
    extrapolating linearly at the borders (exact for linear ramps)."""
    full = size * block
    if size == 1:
        return np.ones((full, 1))
    t = (np.arange(full) + 0.5) / block - 0.5
    k0 = np.clip(np.floor(t).astype(int), 0, size - 2)
    frac = t - k0
    matrix = np.zeros((full, size))
    matrix[np.arange(full), k0] = 1 - frac
    matrix[np.arange(full), k0 + 1] = frac
    return matrix


def separable(rows, image, columns):
    """rows @ image[..., c] @ columns.T for every channel c of an h x w x C array."""
    return np.stack([rows @ image[..., c] @ columns.T for c in range(image.shape[-1])],
                    axis=-1)


@dataclasses.dataclass
class PlateStats:
    """Normalisation of one plate: per channel (last axis = the model's channels)."""
    lowres_map: np.ndarray  # (h, w, C) blurred block means, before flooring
    block: int
    floor: np.ndarray       # (C,)
    low: np.ndarray         # (C,) 0.1st percentile of corrected intensities
    high: np.ndarray        # (C,) 99.9th percentile

    def full_map(self):
        """The H x W x C float32 illumination map (>= 1)."""
        h, w, _ = self.lowres_map.shape
        up_h, up_w = upsample_matrix(h, self.block), upsample_matrix(w, self.block)
        full = separable(up_h, self.lowres_map, up_w)
        return (np.maximum(full, self.floor) / self.floor).astype(np.float32)

    def to_json(self):
        return {"block": self.block, "floor": self.floor.tolist(),
                "low": self.low.tolist(), "high": self.high.tolist()}


def illumination_lowres(block_means, sigma, block):
    """Blurs the mean of per-image block means ((h, w, C) each) at low resolution."""
    mean = np.mean(block_means, axis=0)
    h, w, _ = mean.shape
    blur_h, blur_w = blur_matrix(h, sigma / block), blur_matrix(w, sigma / block)
    return separable(blur_h, mean, blur_w)


def floor_of(full_map, where="map", zero=()):
    """Per channel, the 0.02nd percentile of the map's positive values (1 for
    the channels in `zero`, which are all zero)."""
    floors = []
    for c in range(full_map.shape[-1]):
        if c in zero:
            floors.append(1.0)
            continue
        positive = full_map[..., c][full_map[..., c] > 0]
        if positive.size == 0:
            raise ValueError(f"{where}: channel {c} illumination map has no positive values")
        floors.append(np.percentile(positive, FLOOR_PERCENTILE))
    return np.asarray(floors)


def grid_sample(image):
    """The stride-4 (offset 2) pixel grid used for percentile statistics."""
    offset = SAMPLE_STRIDE // 2
    return image[offset::SAMPLE_STRIDE, offset::SAMPLE_STRIDE]


class StatisticsAccumulator:
    """First pass over a plate: feed raw fields, then `finish()` -> PlateStats.

    `estimate_map=False`: the fields are illumination-corrected already
    (CellProfiler's functions): the map is 1 everywhere, only the
    percentiles are computed.
    """

    def __init__(self, height, width, sigma=None, estimate_map=True):
        self.block = illumination_block(height, width)
        self.sigma = default_sigma(height) if sigma is None else sigma
        self.estimate_map = estimate_map
        self.block_means, self.samples = [], []

    def add(self, raw):
        self.block_means.append(block_mean(raw, self.block))
        self.samples.append(grid_sample(raw))

    def finish(self, where="plate"):
        if not self.samples:
            raise ValueError(f"{where}: no fields to compute statistics from")
        if self.estimate_map:
            lowres = illumination_lowres(self.block_means, self.sigma, self.block)
        else:  # a flat map: upsampled and floored, exactly 1.0 everywhere
            lowres = np.ones(self.block_means[0].shape, np.float64)
        channels = lowres.shape[-1]
        # Channels that are zero everywhere (block means of non-negative pixels).
        zero = [c for c in range(channels)
                if not any(np.any(means[..., c]) for means in self.block_means)]
        raw_full = separable(upsample_matrix(lowres.shape[0], self.block), lowres,
                             upsample_matrix(lowres.shape[1], self.block))
        stats = PlateStats(lowres, self.block, floor_of(raw_full, where, zero),
                           np.zeros(channels), np.ones(channels))
        map_samples = grid_sample(stats.full_map())
        corrected = np.stack(self.samples).astype(np.float32) / map_samples
        flat = corrected.reshape(-1, corrected.shape[-1])
        stats.low = np.percentile(flat, LOW_PERCENTILE, axis=0)
        stats.high = np.percentile(flat, HIGH_PERCENTILE, axis=0)
        stats.low[zero], stats.high[zero] = 0.0, 1.0
        for c in range(channels):
            if stats.high[c] <= stats.low[c]:
                raise ValueError(f"{where}: channel {c} has no intensity range "
                                 f"(percentiles {stats.low[c]} .. {stats.high[c]})")
        return stats


def plate_statistics(raw_fields, sigma=None):
    """PlateStats from a list of uint16 H x W x C fields of one plate."""
    height, width = raw_fields[0].shape[:2]
    accumulator = StatisticsAccumulator(height, width, sigma)
    for raw in raw_fields:
        accumulator.add(raw)
    return accumulator.finish()


def normalize(raw, stats, full_map=None):
    """Float32 H x W x C in [0, 1]: illumination-corrected and scaled."""
    full_map = stats.full_map() if full_map is None else full_map
    low = stats.low.astype(np.float32)
    scale = (1.0 / (stats.high - stats.low)).astype(np.float32)
    corrected = raw.astype(np.float32) / full_map
    return np.clip((corrected - low) * scale, 0.0, 1.0)


def to_uint8(image):
    """[0, 1] floats to uint8 (rounded)."""
    return np.rint(np.asarray(image, np.float32) * 255.0).astype(np.uint8)


STATS_JSON, MAPS_NPZ = "normalization.json", "illumination.npz"


BBBC021_CHANNELS = ("DAPI", "Tubulin", "Actin")
CELLPROFILER = "cellprofiler"  # normalization.json "illumination": CellProfiler's functions


def save_statistics(directory, stats_by_plate, sigma, extra=None, channels=BBBC021_CHANNELS,
                    illumination="estimate"):
    """Writes normalization.json + illumination.npz atomically; returns the JSON dict.

    `channels` names the model's input channels, in order. A screen without
    plates has the one plate "". `illumination="cellprofiler"`: the fields were
    divided by CellProfiler's illumination functions before these statistics
    (their maps are 1); recorded as `"illumination": "cellprofiler"` (the key
    is absent for our own estimated maps, so today's files stay as they are).
    """
    for plate, stats in stats_by_plate.items():
        if stats.lowres_map.shape[-1] != len(channels):
            raise ValueError(f"{plate_label(plate)}: {stats.lowres_map.shape[-1]} channels, "
                             f"but {len(channels)} channel names {list(channels)}")
    marker = {"illumination": CELLPROFILER} if illumination == CELLPROFILER else {}
    summary = {**(extra or {}), **marker, "sigma": sigma, "channels": list(channels),
               "maps_file": MAPS_NPZ,
               "plates": {p: s.to_json() for p, s in sorted(stats_by_plate.items())}}
    with atomic.atomic_file(os.path.join(directory, MAPS_NPZ)) as tmp:
        np.savez(tmp, **{p: s.lowres_map for p, s in stats_by_plate.items()})
    # The JSON last: it names the maps file, so it never points at a missing one.
    atomic.write_json_atomic(os.path.join(directory, STATS_JSON), summary)
    return summary


def plate_label(plate):
    return f"plate {plate}" if plate else "plate '' (no plate column: one plate)"


def load_statistics(directory):
    """{plate: PlateStats} saved by `save_statistics` (for inference on new fields)."""
    # A local directory, or an export's on object storage.
    with storage.open_file(os.path.join(directory, STATS_JSON)) as f:
        summary = json.load(f)
    with storage.open_file(os.path.join(directory, summary["maps_file"]), "rb") as f:
        maps = np.load(io.BytesIO(f.read()))
    return {plate: PlateStats(maps[plate], s["block"], np.asarray(s["floor"]),
                              np.asarray(s["low"]), np.asarray(s["high"]))
            for plate, s in summary["plates"].items()}
