"""Raw fields -> the uint8 images the model was trained on: the converter's normalisation.

The converter divides each raw field by its plate x channel illumination map
and maps the plate's 0.1st..99.9th intensity percentiles to 0..255
(`conversion/normalization.py`). Which statistics a prediction uses is
`--normalization`:

- `training`: the export's own (the converter's statistics, copied into the
  export): exactly the training-time preprocessing, for plates that were in the
  training data; any other plate is an error naming it.
- `plate`: computed from this input, per plate, by a first pass over the
  plate's fields (the converter's `StatisticsAccumulator`, same sigma), for new
  plates of a similar screen.
- `image`: computed from the field alone: a flat illumination map (no
  correction) and the field's own 0.1st..99.9th percentiles per channel (on
  the converter's stride-4 grid). Needs nothing else, but every field gets
  stretched to the full range, so faint and bright fields look alike.

Raw fields are read at the size the statistics were made for (the
converter's --height x --width; for `plate` and `image`, the export's input
size). An export of the paper's Dataset B takes the 724 x 724 centre of a
normalised 1024 x 1280 field, as the converter wrote its unrotated crops.

Usage:

    normalizer = FieldNormalizer("training", 1024, 1280, export.load_statistics(path))
    normalizer.check_plates(fields)                  # ValueError naming a missing plate
    image = normalizer(field, raw)                   # uint8 H x W x 3
"""

import logging

import numpy as np

from mcnn_keras.data.conversion import augment
from mcnn_keras.data.conversion import normalization as norm
from mcnn_keras.serve.predict.inputs import ImageError

_LOG = logging.getLogger(__name__)


def image_statistics(raw, where):
    """PlateStats of one field alone: flat illumination, its own percentiles."""
    height, width = raw.shape[:2]
    block = norm.illumination_block(height, width)
    flat = norm.grid_sample(raw).reshape(-1, raw.shape[-1]).astype(np.float32)
    low = np.percentile(flat, norm.LOW_PERCENTILE, axis=0)
    high = np.percentile(flat, norm.HIGH_PERCENTILE, axis=0)
    for c in range(raw.shape[-1]):
        if not raw[..., c].any():  # an all-zero channel (two-channel screens) stays zero
            low[c], high[c] = 0.0, 1.0
        elif high[c] <= low[c]:
            raise ImageError(f"{where}: channel {c} has no intensity range (percentiles "
                             f"{low[c]:g} .. {high[c]:g}): cannot normalise it alone")
    lowres = np.ones((height // block, width // block, raw.shape[-1]))
    return norm.PlateStats(lowres, block, np.ones(raw.shape[-1]), low, high)


class FieldNormalizer:
    """Normalises raw fields with the statistics `mode` says (module docstring)."""

    def __init__(self, mode, height, width, statistics=None, sigma=None):
        self.mode, self.height, self.width = mode, height, width  # the export's input
        self.statistics = dict(statistics or {})  # {plate: PlateStats}
        self.sigma = sigma
        self._maps = {}
        self.read_size = (height, width)
        if mode == "training" and self.statistics:
            stats = next(iter(self.statistics.values()))
            self.read_size = tuple(n * stats.block for n in stats.lowres_map.shape[:2])
        if self.read_size != (height, width) and not (
                height == width and height <= min(self.read_size)):
            raise ValueError(f"the training statistics are for {self.read_size[0]}x"
                             f"{self.read_size[1]} fields, the export takes {height}x{width} "
                             f"images: not a centre crop (Dataset B) of them")

    def check_plates(self, fields):
        """Training mode: ValueError naming the first plate the export has no statistics of."""
        if self.mode != "training":
            return
        for field in fields:
            plate = field.metadata.get("plate", "")
            if plate not in self.statistics:
                known = ", ".join(sorted(self.statistics)[:5])
                more = ", ..." if len(self.statistics) > 5 else ""
                raise ValueError(
                    f"{field.where}: plate {plate!r} was not in the training data (the "
                    f"export has statistics of {known}{more}): use --normalization=plate "
                    f"(statistics from this input's plate) or --normalization=image")

    def add_plate_statistics(self, results, fields_per_plate, on_error):
        """Plate mode's first pass: `results` yields (field, raw or exception).

        A plate's statistics are finished once its last field has been seen, so
        an input sorted by plate holds one plate's samples at a time. Bad
        fields go to `on_error(field, exception)` (which may raise). Returns the
        fields that were read.
        """
        remaining = dict(fields_per_plate)
        accumulators, good = {}, []
        for field, raw in results:
            plate = field.metadata.get("plate", "")
            if isinstance(raw, Exception):
                on_error(field, raw)
            else:
                if plate not in accumulators:
                    accumulators[plate] = norm.StatisticsAccumulator(
                        *self.read_size, self.sigma)
                accumulators[plate].add(raw)
                good.append(field)
            remaining[plate] -= 1
            if remaining[plate] == 0 and plate in accumulators:
                accumulator = accumulators.pop(plate)
                self.statistics[plate] = accumulator.finish(f"plate {plate!r}")
                _LOG.info("statistics of plate %r from %d fields", plate,
                          len(accumulator.samples))
        return good

    def __call__(self, field, raw):
        """The uint8 H x W x 3 image the model takes, as the converter writes it."""
        if self.mode == "image":
            stats = image_statistics(raw, field.where)
            key = "__flat__"
        else:
            key = field.metadata.get("plate", "")
            stats = self.statistics[key]
        if key not in self._maps:  # one map per plate: computing it costs more than a field
            self._maps[key] = (np.ones(raw.shape, np.float32) if key == "__flat__"
                               else stats.full_map())
        image = norm.normalize(raw, stats, self._maps[key])
        if image.shape[:2] != (self.height, self.width):  # Dataset B: the converter's crop
            image = augment.rotate_crop(image, 0, self.height)
        return norm.to_uint8(image)
