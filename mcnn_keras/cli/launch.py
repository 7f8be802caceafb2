r"""mcnn-launch: runs N workers of a multi-worker job on this host.

    mcnn-launch --num_workers=2 --pin_cores -- \
        mcnn-train --strategy=multi_worker_mirrored --model_dir=runs/mw

starts two `mcnn-train` processes on 127.0.0.1 with their own TF_CONFIG and
free ports; with --pin_cores each gets its own cores and as many intra-op
threads, and on a host with several NUMA nodes (--numa=auto) its cores from
one node and its memory bound there (numactl; a warning without it). The plan
is printed. Output lines carry a `[worker i] ` prefix. Exits non-zero (and stops
the other workers) as soon as one worker fails.

Inside a Slurm step, print this task's TF_CONFIG (see deploy/slurm):

    export TF_CONFIG=$(python -m mcnn_keras.cli.launch --print_slurm_tf_config)
"""

import os
import sys

from mcnn_keras.cli import common, config_flags
from mcnn_keras.train.launch_options import LaunchOptions, check_options

SECTIONS = config_flags.define_sections({"launch": LaunchOptions})


def main(argv):
    from mcnn_keras.core import cluster  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import launcher  # pylint: disable=import-outside-toplevel
    try:
        o = check_options(LaunchOptions(**config_flags.values(SECTIONS)))
        if o.print_slurm_tf_config:
            print(cluster.slurm_tf_config(os.environ, base_port=o.base_port))
            return 0
        return launcher.launch_local(argv[1:], o.num_workers, pin_cores=o.pin_cores,
                                     threads_per_worker=o.threads_per_worker,
                                     grace_period_s=o.grace_period_s, numa=o.numa)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1


def run():
    common.run_main(main, help_sections=SECTIONS, import_tensorflow=False)


if __name__ == "__main__":
    run()
