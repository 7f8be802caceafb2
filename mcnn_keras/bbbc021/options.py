"""The BBBC021 converter's options, light enough for a binary's `--help`.

The `mcnn-convert-bbbc021` flags are generated from `ConvertOptions`' fields
(`cli/config_flags.py`), so options and flags cannot drift apart.

Usage:

    options = ConvertOptions("BBBC021", "out", split="loco", fold="taxol")
    check_options(options)        # ValueError naming the flag
"""

import dataclasses
import os

from mcnn_keras.bbbc021 import augment, splits
from mcnn_keras.config import check_value, option

DATASETS = ("none", "A", "B")


@dataclasses.dataclass
class ConvertOptions:
    """The converter's settings; the `mcnn-convert-bbbc021` flags are generated
    from these fields (`cli/config_flags.py`)."""
    bbbc021_dir: str = option("", "Folder with the two CSVs and the plate folders.",
                              required=True)
    output_dir: str = option("", "Where shards and manifest.json go.", required=True)
    split: str = option("random", "random: image-level (leaky); loco: leave one compound "
                        "out; plate: hold out one plate.", choices=tuple(splits.SPLITS))
    fold: str = option("0", "Fold index, 'all' (one fold-NN/ folder each), or for loco a "
                       "compound name (plate: a plate name).")
    dataset: str = option("none", "none: fields as they are; A: plus their dihedral "
                          "variants (mcnn_keras/dihedral.py); B: 724x724 centre crops of "
                          "15-degree rotations (and mirrors).", choices=DATASETS)
    workers: int = option(1, "Processes (parallel over plates, then shards).", minimum=1)
    val_fraction: float = option(0.1, "Validation share for random (and DMSO under loco).",
                                 minimum=0.0)
    drop_dmso: bool = option(False, "Drop DMSO: the 12-class protocol.")
    num_shards: int = option(8, "Training shards (validation gets proportionally fewer).",
                             minimum=1)
    on_bad_file: str = option("error", "A bad TIFF stops the job, or its field is skipped "
                              "and counted.", choices=("error", "skip"))
    augment_mode: str = option("write", "Dataset A: write the variants, or only originals "
                               "(train with --augment).", choices=("write", "on_the_fly"))
    augment_val: bool = option(False, "Also write variants of validation fields.")
    rotation_step: int = option(15, "Dataset B rotation step in degrees.", above=0)
    height: int = option(1024, "Every TIFF must be this high.", minimum=8)
    width: int = option(1280, "Every TIFF must be this wide.", minimum=8)
    illum_sigma: float = option(0.0, "Illumination blur sigma in pixels; 0 = 500 x "
                                "height/1024.", minimum=0.0)
    seed: int = option(0, "Seed of the splits and shard assignment.", minimum=0)


def check_options(o):
    """Raises ValueError naming the flag of the first bad option."""
    for field in dataclasses.fields(o):
        check_value(field.name, getattr(o, field.name), field.metadata)
    augment.rotation_angles(o.rotation_step)
    if not os.path.isdir(o.bbbc021_dir):
        raise ValueError(f"--bbbc021_dir {o.bbbc021_dir}: not a directory")
