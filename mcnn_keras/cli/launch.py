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

from absl import flags

from mcnn_keras.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_integer("num_workers", 2, "Worker processes to start on this host.")
flags.DEFINE_boolean("pin_cores", False, "Bind each worker to its own cores and set its "
                     "intra-op threads to the number of cores it owns.")
flags.DEFINE_enum("numa", "auto", ["auto", "off"], "With --pin_cores on a host with several "
                  "NUMA nodes (/sys/devices/system/node): auto = each worker's cores from one "
                  "node and its memory bound there (numactl --membind); off = cores only.")
flags.DEFINE_integer("threads_per_worker", 0, "Cores (and intra-op threads) per worker; "
                     "0 = split this host's cores evenly (with --pin_cores).")
flags.DEFINE_float("grace_period_s", 10.0, "Seconds between SIGTERM and SIGKILL when "
                   "stopping workers.")
flags.DEFINE_boolean("print_slurm_tf_config", False, "Print this Slurm task's TF_CONFIG "
                     "(from SLURM_* variables) and exit.")
flags.DEFINE_integer("base_port", 8888, "First port of the workers on a node "
                     "(--print_slurm_tf_config).")


def main(argv):
    from mcnn_keras import cluster, launcher  # pylint: disable=import-outside-toplevel
    try:
        if FLAGS.print_slurm_tf_config:
            print(cluster.slurm_tf_config(os.environ, base_port=FLAGS.base_port))
            return 0
        return launcher.launch_local(argv[1:], FLAGS.num_workers, pin_cores=FLAGS.pin_cores,
                                     threads_per_worker=FLAGS.threads_per_worker,
                                     grace_period_s=FLAGS.grace_period_s, numa=FLAGS.numa)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1


def run():
    common.run_main(main, import_tensorflow=False)


if __name__ == "__main__":
    run()
