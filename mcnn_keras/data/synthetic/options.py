"""The options of `mcnn-synthetic` (and the synthetic-set options `mcnn-ttt` shares).

The `mcnn-synthetic` flags are generated from `SyntheticOptions`' fields
(`cli/config_flags.py`); `generator.write_synthetic_dataset` writes the set.
The three difficulty knobs are `difficulty.Difficulty`'s fields, unset (None)
meaning the --difficulty preset's value.

Usage:

    options = check_options(SyntheticOptions(output_dir="data/synthetic", num_shards=2))
    check_options(SyntheticOptions(output_dir="data/cp", stains="cell_painting"))
    difficulty = make_options_difficulty(options)   # the preset with the knobs given
"""

import dataclasses

from mcnn_keras.core.image_size import check_size_flags
from mcnn_keras.core.options import check_fields, field_map, option, same_as
from mcnn_keras.data.synthetic.difficulty import DIFFICULTIES, Difficulty, make_difficulty

_KNOBS = field_map(Difficulty)


def _knob(name):
    """The flag of Difficulty's field `name`: unset (None) = the preset's value."""
    field = _KNOBS[name]
    return same_as(field, None, help=f"{field.metadata['help']} Unset: the preset's.")


@dataclasses.dataclass(frozen=True)
class SyntheticOptions:
    """Where `mcnn-synthetic` writes, how many images of which size, how hard."""

    output_dir: str = option("", "Directory for the TFRecord shards.", required=True)
    height: int = option(128, "Image height: a multiple of 128 (or 724).")
    width: int = option(128, "Image width: a multiple of 128 (or 724).")
    num_train: int = option(1300, "Training images (balanced over 13 classes).", minimum=0)
    num_val: int = option(260, "Validation images (balanced over 13 classes).", minimum=0)
    num_shards: int = option(4, "Training shards; val gets max(1, num_shards // 2).",
                             minimum=1)
    seed: int = option(0, "Random seed; the same seed gives byte-identical files.")
    compression: str = option("", "TFRecord compression.", choices=("", "GZIP"))
    stains: str = option("bbbc021", "Channels: bbbc021 (DNA/DAPI, tubulin, actin) or "
                         "cell_painting (DNA, ER, RNA, AGP, Mito).",
                         choices=("bbbc021", "cell_painting"), enum=False)
    difficulty: str = option("default", "Preset of the three options below (default: all "
                             "off).", choices=tuple(DIFFICULTIES))
    penetrance: float = _knob("penetrance")
    plate_effects: float = _knob("plate_effects")
    dmso_like_fraction: float = _knob("dmso_like_fraction")


def make_options_difficulty(options):
    """The `Difficulty` of `options`' --difficulty preset and the knobs given
    (ValueError naming a knob out of range); any object with those fields."""
    return make_difficulty(options.difficulty, **{
        name: getattr(options, name) for name in _KNOBS})


def check_options(options):
    """Raises ValueError naming the flag of the first bad option; returns `options`."""
    check_size_flags(options.height, options.width)
    check_fields(options)
    if not options.output_dir:
        raise ValueError("--output_dir is required")
    make_options_difficulty(options)
    return options
