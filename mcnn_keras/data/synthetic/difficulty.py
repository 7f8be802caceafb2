"""The synthetic data's difficulty options: what makes real screens harder.

`Difficulty`'s defaults change nothing (the files `synthetic` writes stay
byte-identical), `DIFFICULTIES["hard"]` turns all three on:

- `penetrance` (1.0; hard 0.6): each cell of a treated field shows the
  phenotype with this probability; the others are drawn exactly as DMSO
  cells (style and size), only their placement keeps the treatment's
  arrangement (a population effect). `truth["phenotype"]` says which.
- `plate_effects` (0.0 = off; hard 1.0): strength of the plate's own
  brightness (per-channel gain exp(s x U(-0.4, 0.4)); the gains of channels
  4 and 5, for Cell Painting fields, come from a stream of their own, so
  the 3-channel plates stay as they were) and illumination
  (tilt up to s x 0.2, an off-centre radial fall-off of s x U(0.1, 0.35)
  at unit distance from it), shared by every field of that
  plate and applied after the per-field exposure, so brightness varies by
  plate, never by class. `NUM_PLATES` plates per seed, shared by train and
  val; the record's `plate` names the field's plate.
- `dmso_like_fraction` (0.0; hard 0.005): this fraction of treated fields
  look entirely like DMSO (no cell responds, DMSO arrangement), as compounds
  do at low doses; theirs is the lowest `concentration` (no other treated
  field's), their label stays the treatment's. No model can tell them from
  DMSO, which caps top-1 at `Difficulty.accuracy_ceiling` = 1 - fraction x
  12/13 (99.54 % for hard) on average; a split's own count is in
  `write_synthetic_dataset`'s summary.

Usage (`synthetic` re-exports every name here):

    hard = make_difficulty("hard", penetrance=0.5)  # a preset, one option changed
    hard.accuracy_ceiling                            # 0.9954 (DMSO-like fields)
    plate = make_plates(seed=1, strength=hard.plate_effects)[0]
    plate.illumination(128, 128)                     # (3, H, W) float32 multiplier
    plate.illumination(128, 128, channels=5)         # (5, H, W): Cell Painting
"""

import dataclasses
import math

import numpy as np

from mcnn_keras.data import classes

PLATE_WEEKS = tuple(range(1, 11))  # plate names are Week<N>_<id>


def _option(default, help):  # pylint: disable=redefined-builtin
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """What makes a synthetic set harder (see the module docstring); defaults: off."""

    penetrance: float = _option(1.0, "Fraction of cells in a treated field showing the "
                                "phenotype; the others look like DMSO cells. 1 = all.")
    plate_effects: float = _option(0.0, "Strength of per-plate brightness and illumination "
                                   "differences. 0 = none, 1 = the documented ranges.")
    dmso_like_fraction: float = _option(0.0, "Fraction of treated fields (at the lowest "
                                        "concentration) that look like DMSO; caps top-1 "
                                        "at 1 - fraction x 12/13.")

    def __post_init__(self):
        for name, low, high in (("penetrance", 0, 1), ("plate_effects", 0, 4),
                                ("dmso_like_fraction", 0, 1)):
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"--{name} must be in [{low}, {high}], got {value}")

    @property
    def accuracy_ceiling(self):
        """Best possible top-1 on balanced classes: DMSO-like fields are called DMSO."""
        treated = (classes.NUM_CLASSES - 1) / classes.NUM_CLASSES
        return 1 - self.dmso_like_fraction * treated


DIFFICULTIES = {"default": Difficulty(),
                "hard": Difficulty(penetrance=0.6, plate_effects=1.0, dmso_like_fraction=0.005)}


def make_difficulty(preset="default", **options):
    """The preset named `preset` with the `options` that are not None replaced."""
    if preset not in DIFFICULTIES:
        raise ValueError(f"--difficulty must be one of {sorted(DIFFICULTIES)}, got {preset!r}")
    return dataclasses.replace(DIFFICULTIES[preset],
                               **{k: v for k, v in options.items() if v is not None})


NUM_PLATES = 12
_PLATE_STREAM = 100  # seed-sequence tag of the plate table, apart from the image streams
EXTRA_CHANNELS = 2  # gains beyond the first 3 channels (Cell Painting has 5)


@dataclasses.dataclass(frozen=True)
class Plate:
    """One plate's brightness and illumination, shared by all its fields."""

    name: str
    gain: tuple  # per channel
    tilt: tuple  # (y, x) slopes over the field
    centre: tuple  # (y, x) of the radial fall-off, in [-1, 1] field coordinates
    falloff: float  # relative dimming at distance 1 from the centre
    extra_gain: tuple = ()  # channels 4, 5, ... (`EXTRA_CHANNELS` of them)

    def illumination(self, height, width, channels=3):
        """(channels, H, W) float32 multiplier: gain x illumination profile."""
        gain = (tuple(self.gain) + tuple(self.extra_gain))[:channels]
        if len(gain) < channels:
            raise ValueError(f"plate {self.name} has gains for {len(gain)} channels, "
                             f"not {channels}")
        yy = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
        xx = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
        r2 = (yy - self.centre[0]) ** 2 + (xx - self.centre[1]) ** 2
        profile = np.maximum(1 + self.tilt[0] * yy + self.tilt[1] * xx
                             - self.falloff * r2, 0.2)
        return np.asarray(gain, np.float32)[:, None, None] * profile[None]


def make_plates(seed, strength, count=NUM_PLATES):
    """The data set's plate table: a pure function of (seed, strength, count)."""
    rng = np.random.default_rng([seed, _PLATE_STREAM])
    # Another stream, so that the first three channels' plates do not move.
    extra = np.random.default_rng([seed, _PLATE_STREAM, 1]).uniform(
        -1, 1, (count, EXTRA_CHANNELS)).tolist()
    plates = []
    for k in range(count):
        u = rng.uniform(-1, 1, 8).tolist()
        plates.append(Plate(
            name=f"Week{k % len(PLATE_WEEKS) + 1}_{int(rng.integers(20000, 50000)):05d}",
            gain=tuple(math.exp(strength * 0.4 * g) for g in u[:3]),
            tilt=(strength * 0.2 * u[3], strength * 0.2 * u[4]),
            centre=(0.3 * u[5], 0.3 * u[6]),
            falloff=strength * (0.225 + 0.125 * u[7]),
            extra_gain=tuple(math.exp(strength * 0.4 * g) for g in extra[k])))
    return plates
