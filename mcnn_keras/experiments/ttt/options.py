"""The options of `mcnn-ttt`: the configurations, the runs and their data.

The `mcnn-ttt` flags are generated from `TTTOptions`' fields
(`cli/config_flags.py`). Values shared with `mcnn-train` (dtype, image size,
shards, target accuracy, epochs) take their rules from `train/config.py`'s
fields, and the synthetic set's from `data/synthetic/options.py`'s: one
definition each.

Usage:

    options = check_options(TTTOptions(output_dir="out/ttt", workers=("1", "2")))
    for spec in specs(options): ...
"""

import dataclasses

from mcnn_keras.core.image_size import check_size_flags
from mcnn_keras.core.options import check_fields, field_map, option, same_as
from mcnn_keras.data.synthetic.options import SyntheticOptions, make_options_difficulty
from mcnn_keras.experiments.ttt import experiment
from mcnn_keras.train.config import DataConfig, ModelConfig, RuntimeConfig, ScheduleConfig

_DATA, _MODEL, _SCHEDULE, _RUNTIME, _SYNTHETIC = (field_map(c) for c in (
    DataConfig, ModelConfig, ScheduleConfig, RuntimeConfig, SyntheticOptions))
_SCALING = {"on": (True,), "off": (False,), "both": (True, False)}


@dataclasses.dataclass(frozen=True)
class TTTOptions:
    """What `mcnn-ttt` trains, until when, and on which data."""

    # configurations
    configs: str = option("", "Configurations: 'name:key=value,...;...' (see above).")
    workers: tuple = option((), "Grid: worker counts (with --batch_sizes; default 1).")
    batch_sizes: tuple = option((), "Grid: per-worker batch sizes (default 8).")
    linear_scaling: str = option("on", "Grid: with the linear LR scaling rule, without it, "
                                 "or both.", choices=tuple(_SCALING))
    # runs
    output_dir: str = option("", "Directory for the data, the runs, the table and the "
                             "plots.", required=True)
    target_accuracy: float = same_as(_RUNTIME["target_accuracy"], 0.99,
                                     help="Validation top-1 that ends a run.",
                                     minimum=None, above=0.0)
    max_epochs: int = same_as(_SCHEDULE["epochs"], 20, help="Epochs of each run (its LR "
                              "schedule spans them).")
    dtype: str = same_as(_MODEL["dtype"], help="Compute dtype.")
    extra_train_flags: str = option("", "mcnn-train flags for every run, e.g. "
                                    "'--flagfile=configs/demo.flags --augment'.")
    stall_epochs: int = option(5, "A run whose validation top-1 is not above chance + "
                               "--stall_margin after this many epochs is stopped as "
                               "stalled; 0 = off.", minimum=0)
    stall_margin: float = option(0.05, "See --stall_epochs.")
    diverge_loss: float = option(25.0, "A run whose epoch loss is above this (or not "
                                 "finite) is stopped as diverged; chance is ln 13 = 2.56.")
    time_limit_min: float = option(0.0, "Stop a run after this many minutes (status: not "
                                   "reached); 0 = no limit.", minimum=0.0)
    # data
    train_files: str = same_as(_DATA["train_files"], "", help="Training shards (globs); "
                               "'' = write a synthetic set.")
    val_files: str = same_as(_DATA["val_files"], "", help="Validation shards, with "
                             "--train_files.")
    height: int = same_as(_DATA["height"], 128, help="Image height (of the synthetic set, "
                          "and trained at).")
    width: int = same_as(_DATA["width"], 128, help="Image width.")
    num_train: int = same_as(_SYNTHETIC["num_train"], help="Synthetic training images "
                             "(balanced over 13 classes).")
    num_val: int = same_as(_SYNTHETIC["num_val"], help="Synthetic validation images.")
    num_shards: int = same_as(_SYNTHETIC["num_shards"], help="Synthetic training shards "
                              "(at least the workers).")
    data_seed: int = same_as(_SYNTHETIC["seed"], help="Seed of the synthetic set.")
    difficulty: str = same_as(_SYNTHETIC["difficulty"], help="Synthetic set: preset of the "
                              "three options below (mcnn_keras/data/synthetic/generator.py).")
    penetrance: float = same_as(_SYNTHETIC["penetrance"])
    plate_effects: float = same_as(_SYNTHETIC["plate_effects"])
    dmso_like_fraction: float = same_as(_SYNTHETIC["dmso_like_fraction"])


def check_options(options):
    """Raises ValueError naming the flag of the first bad option; returns `options`.

    """
    check_size_flags(options.height, options.width)
    check_fields(options)
    if not options.output_dir:
        raise ValueError("--output_dir is required")
    if not options.target_accuracy <= 1:
        raise ValueError(f"--target_accuracy={options.target_accuracy}: must be <= 1")
    if bool(options.train_files) != bool(options.val_files):
        raise ValueError("give both --train_files and --val_files, or neither")
    make_options_difficulty(options)
    specs(options)
    return options


def specs(options):
    """The RunSpecs of --configs and the --workers x --batch_sizes grid."""
    result = experiment.parse_configs(options.configs)
    if options.workers or options.batch_sizes:
        try:
            workers = [int(w) for w in options.workers or ["1"]]
            batches = [int(b) for b in options.batch_sizes or ["8"]]
        except ValueError:
            raise ValueError("--workers and --batch_sizes take integers") from None
        result = experiment.unique_names(
            result + experiment.grid(workers, batches, _SCALING[options.linear_scaling]))
    if not result:
        raise ValueError("no configuration: give --configs and/or --workers/--batch_sizes")
    return result
