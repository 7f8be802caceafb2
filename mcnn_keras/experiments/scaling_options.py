"""The options of `mcnn-scaling-model`: what to predict, on which cluster.

Usage:

    o = check_options(ScalingModelOptions(project=True, nodes=(1, 2, 4)), given={"nodes"})
"""

import dataclasses

from mcnn_keras.core.options import check_fields, option
from mcnn_keras.experiments.scaling_model import DATASETS, DTYPES, MODES


CLUSTERS = ("paper", "this_machine")


RUN_MODES = ("paper_table1", "paper_dataset_a", "project")


# Flags the paper's fixed layout leaves no room for.
_PAPER_LAYOUT = ("nodes", "dataset", "workers_per_node", "local_batch", "max_global_batch")


@dataclasses.dataclass(frozen=True)
class ScalingModelOptions:
    """What `mcnn-scaling-model` predicts; its flags are generated from these fields.

    None: not given, the mode's default (see each help).
    """

    paper_table1: bool = option(False, "Print the paper's Table 1 (Dataset B) against the "
                                "model: one JSON line per node count.")
    paper_dataset_a: bool = option(False, "Print the paper's two Dataset A runs against "
                                   "the model.")
    project: bool = option(False, "Print this project's predictions on the cluster for "
                           "Dataset A and B: sufficient factors vs all-reduce, float32 vs "
                           "bfloat16.")
    plot: str = option(None, "Write a PNG of predicted vs paper images/s and scaling "
                       "efficiency vs nodes (Table 1) to this file.")
    cluster: str = option("paper", "paper (2S Xeon Gold 6148, 100 Gb/s Omni-Path) or "
                          "this_machine (2 vCPU, gRPC over loopback).", choices=CLUSTERS,
                          enum=False)
    nodes: tuple = option(None, "Node counts (default 1,2,4,...,128; --project: "
                          "1,8,32,128).")
    dataset: str = option("B", "A (1024 x 1280, 9 093 images) or B (724 x 724 padded to "
                          "768 x 768, 313 282 images).", choices=tuple(DATASETS), enum=False)
    workers_per_node: int = option(None, "Workers per node (default: the paper's, 4 for A, "
                                   "8 for B).", minimum=1)
    local_batch: int = option(None, "Batch per worker until the global batch reaches "
                              "--max_global_batch (default: the paper's, 8 for A, 16 for "
                              "B).", minimum=1)
    max_global_batch: int = option(2048, "Cap on the global batch (the paper's 2048); "
                                   "beyond it the local batch shrinks.", minimum=1)
    bandwidth_gbps: float = option(None, "Inter-node link in Gbit/s (default: the "
                                   "cluster's; paper: 100).", above=0.0)
    dtype: str = option(None, "float32 or bfloat16 (default float32; --project: both).",
                        choices=DTYPES, enum=False)
    dense_gradient: str = option(None, "auto, factors or allreduce (default: auto; paper "
                                 "modes: allreduce; --project: both).", choices=MODES,
                                 enum=False)
    overlap: float = option(None, "Fraction of communication hidden under the backward "
                            "pass, 0..1 (default: 1 for the paper's Horovod-style runs, 0 "
                            "for this project).", minimum=0.0)
    step_overhead_s: float = option(None, "Fixed time per worker step (default: fitted, "
                                    "0.97 s on the paper's cluster).", minimum=0.0)
    bf16_speedup: float = option(1.7, "Compute speed-up of bfloat16 over float32.",
                                 above=0.0)

    def run_mode(self):
        """The one mode flag given (None: predictions for --nodes)."""
        modes = [m for m in RUN_MODES if getattr(self, m)]
        return modes[0] if modes else None

    def node_counts(self, default):
        """--nodes as integers, or `default` when not given (ValueError naming the flag)."""
        if self.nodes is None:
            return default
        try:
            nodes = tuple(int(n) for n in self.nodes)
        except ValueError:
            nodes = ()
        if not nodes or min(nodes) < 1:
            raise ValueError(f"--nodes must be positive integers, got {','.join(self.nodes)}")
        return nodes


def check_options(options, given=()):
    """Raises a one-line ValueError naming the first bad flag; returns `options`.

    `given`: the flags given on the command line (the paper's modes refuse
    those that would change the paper's layout).
    """
    modes = [m for m in RUN_MODES if getattr(options, m)]
    if len(modes) > 1:
        raise ValueError(f"--{modes[0]} and --{modes[1]} cannot be combined")
    check_fields(options)
    if modes and modes[0].startswith("paper_"):
        for name in _PAPER_LAYOUT:
            if name in given:
                raise ValueError(f"--{name} cannot be combined with --{modes[0]} (the "
                                 "paper's layout is fixed)")
    if options.overlap is not None and options.overlap > 1:
        raise ValueError(f"--overlap={options.overlap}: must be <= 1")
    options.node_counts(())
    if options.plot is not None and not options.plot.lower().endswith(".png"):
        raise ValueError(f"--plot must name a .png file, got {options.plot!r}")
    return options
