"""The options of `mcnn-launch`, beside `launcher.launch_local` which takes them.

The `mcnn-launch` flags are generated from `LaunchOptions`' fields
(`cli/config_flags.py`).

Usage:

    options = check_options(LaunchOptions(num_workers=2, pin_cores=True))
    launcher.launch_local(command, options.num_workers, pin_cores=options.pin_cores, ...)
"""

import dataclasses

from mcnn_keras.core.options import check_fields, option
from mcnn_keras.train.launcher import NUMA_MODES


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """How many workers `mcnn-launch` starts and how they are placed and stopped."""

    num_workers: int = option(2, "Worker processes to start on this host.", minimum=1)
    pin_cores: bool = option(False, "Bind each worker to its own cores and set its "
                             "intra-op threads to the number of cores it owns.")
    numa: str = option("auto", "With --pin_cores on a host with several NUMA nodes "
                       "(/sys/devices/system/node): auto = each worker's cores from one "
                       "node and its memory bound there (numactl --membind); off = cores "
                       "only.", choices=NUMA_MODES)
    threads_per_worker: int = option(0, "Cores (and intra-op threads) per worker; 0 = split "
                                     "this host's cores evenly (with --pin_cores).",
                                     minimum=0)
    grace_period_s: float = option(10.0, "Seconds between SIGTERM and SIGKILL when "
                                   "stopping workers.", minimum=0.0)
    print_slurm_tf_config: bool = option(False, "Print this Slurm task's TF_CONFIG (from "
                                         "SLURM_* variables) and exit.")
    base_port: int = option(8888, "First port of the workers on a node "
                            "(--print_slurm_tf_config).", minimum=1)


def check_options(options):
    """Raises ValueError naming the flag of the first bad option; returns `options`."""
    return check_fields(options)
