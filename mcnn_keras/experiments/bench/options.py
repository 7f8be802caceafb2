"""The options of `mcnn-bench`: a sweep of `throughput.Setup`s.

The `mcnn-bench` flags are generated from `BenchOptions`' fields
(`cli/config_flags.py`). The values it shares with training (image size,
dtype, remat, micro-batches, input shards, threads) take their rules, and
where the meaning is the same their help, from `train/config.py`'s fields:
one definition each. --batch_size, --dtype and --remat are comma lists; more
than one value runs a sweep.

Usage:

    options = check_options(BenchOptions(batch_size=("8", "16"), dtype=("float32",)))
    for setup in setups(options): ...
"""

import dataclasses
import itertools

from mcnn_keras.core.image_size import check_size_flags
from mcnn_keras.core.options import check_fields, field_map, option, same_as
from mcnn_keras.experiments.bench.throughput import MODES, Setup
from mcnn_keras.train.config import DataConfig, ModelConfig, RuntimeConfig, check_microbatches

_DATA, _MODEL, _RUNTIME = (field_map(c) for c in (DataConfig, ModelConfig, RuntimeConfig))


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """What `mcnn-bench` measures: the configurations and how long."""

    height: int = same_as(_DATA["height"], 1024, help="Image height.")
    width: int = same_as(_DATA["width"], 1280, help="Image width.")
    channels: int = same_as(_DATA["channels"], 3, help="Stains per image (5: Cell "
                            "Painting).", minimum=1)
    batch_size: tuple = option(("8",), "Batch size(s); a comma list runs a sweep.")
    dtype: tuple = same_as(_MODEL["dtype"], ("float32",),
                           help="float32 and/or mixed_bfloat16.")
    remat: tuple = same_as(_MODEL["remat"], ("none",),
                           help="Recomputed pathways: none, full_res and/or all.")
    microbatches: int = same_as(
        _MODEL["microbatches"], 1, help="Micro-batches per step: forward and backward one "
        "after the other, gradients applied once (mcnn_keras/model/microbatch.py).",
        minimum=1, auto=None)
    space_to_depth: bool = option(False, "Run the full-resolution pathway's 5x5 convs as "
                                  "3x3 convs on the 2x2 space-to-depth image (same weights "
                                  "and outputs; mcnn_keras/model/space_to_depth.py).")
    mode: str = option("synthetic", "synthetic: in-memory batches; pipeline: TFRecords "
                       "through the training input; input_only: the input alone; layers: "
                       "each conv/dense layer alone.", choices=MODES)
    steps: int = option(10, "Timed steps (batches; calls per layer).", minimum=1)
    warmup_steps: int = option(2, "Untimed steps first (tracing, buffers).", minimum=0)
    train_files: str = same_as(_DATA["train_files"], "", help="TFRecord globs for "
                               "pipeline/input_only; '' = a temporary set of random records.")
    num_records: int = option(0, "Records of the temporary set; 0 = batch x "
                              "(warmup_steps + steps + 1).", minimum=0)
    peak_size: int = option(4096, "n of the n x n matmul that measures the peak.", minimum=1)
    intra_op_threads: int = same_as(_RUNTIME["intra_op_threads"])
    inter_op_threads: int = same_as(_RUNTIME["inter_op_threads"])
    sweep_output_dir: str = option("", "Write bench.csv, throughput_vs_batch.png and "
                                   "memory_vs_batch.png here.")

    def batch_sizes(self):
        """--batch_size as integers (ValueError naming the flag)."""
        try:
            return [int(b) for b in self.batch_size]
        except ValueError:
            raise ValueError(f"--batch_size: integers expected, got "
                             f"{','.join(self.batch_size)}") from None


def check_options(options):
    """Raises ValueError naming the flag of the first bad option; returns `options`.

    """
    check_size_flags(options.height, options.width)
    batches = options.batch_sizes()
    check_fields(options)
    for b in batches:
        if b < 1:
            raise ValueError(f"--batch_size={b}: must be >= 1")
        check_microbatches(b, options.microbatches)
    return options


def setups(options):
    """The `Setup`s `options` ask for: every dtype x remat x batch size."""
    shared = {f.name: getattr(options, f.name) for f in dataclasses.fields(Setup)
              if f.name not in ("batch_size", "dtype", "remat")}
    return [Setup(batch_size=b, dtype=d, remat=r, **shared)
            for d, r, b in itertools.product(options.dtype, options.remat,
                                             options.batch_sizes())]
