r"""mcnn-bench: training speed and memory of the M-CNN on this machine, as JSON lines.

    mcnn-bench --height=1024 --width=1280 --batch_size=8 --dtype=mixed_bfloat16
    mcnn-bench --mode=layers --batch_size=8 --steps=5        # where the time goes
    mcnn-bench --batch_size=64 --microbatches=4              # 4 slices of 16 per step
    mcnn-bench --mode=pipeline --train_files='data/train-*.tfrecord'
    mcnn-bench --batch_size=8,16,32,64 --dtype=float32,mixed_bfloat16 \
        --sweep_output_dir=bench-out                          # CSV + Fig. 5a/5c plots

One JSON line per configuration (per layer in --mode=layers): images_per_s
(median step after --warmup_steps; images_per_s_mean counts stalls),
gflops_per_s (analytic FLOPs), peak_gflops_per_s (this machine's matmul peak
for the dtype, measured in the same run), fraction_of_peak, peak_rss_bytes,
activation_bytes (analytic, Fig. 2), rss_over_activations, cpu, threads.
Several values of --batch_size, --dtype or --remat (or --sweep_output_dir)
run each configuration in a fresh process, so each peak RSS is its own.
Without --train_files, pipeline and input_only write a temporary set of
random-pixel TFRecords of the given size.
"""

import dataclasses
import json

from mcnn_keras.experiments.bench import throughput as bench
from mcnn_keras.experiments.bench.options import BenchOptions, check_options, setups
from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path

SECTIONS = config_flags.define_sections({"bench": BenchOptions})


def options_from_flags():
    """The checked BenchOptions of the parsed flags, with user paths resolved."""
    o = BenchOptions(**config_flags.values(SECTIONS))
    return check_options(dataclasses.replace(o, train_files=",".join(
        resolve_user_path(p) for p in o.train_files.split(",") if p)))


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    o = options_from_flags()
    configs = setups(o)
    if len(configs) > 1 or o.sweep_output_dir:
        output_dir = None
        if o.sweep_output_dir:  # before the sweep: a file there is one line, not lost work
            from mcnn_keras.io.output_dirs import make_output_dir  # pylint: disable=import-outside-toplevel
            output_dir = make_output_dir(resolve_user_path(o.sweep_output_dir),
                                         "sweep_output_dir")
        rows = bench.sweep(configs, output_dir)
        return 1 if any("error" in row for row in rows) else 0
    common.configure_threads(o.intra_op_threads, o.inter_op_threads)
    for line in bench.run(configs[0]):
        print(json.dumps(line), flush=True)
    return 0


def run():
    common.run_main(main, help_sections=SECTIONS)


if __name__ == "__main__":
    run()
