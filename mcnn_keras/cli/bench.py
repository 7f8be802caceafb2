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
synthetic TFRecords of the given size.
"""

import itertools
import json

from absl import flags

from mcnn_keras import bench, config, memory
from mcnn_keras.cli import common
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS
flags.DEFINE_integer("height", 1024, "Image height.")
flags.DEFINE_integer("width", 1280, "Image width.")
flags.DEFINE_list("batch_size", ["8"], "Batch size(s); a comma list runs a sweep.")
flags.DEFINE_list("dtype", ["float32"], "float32 and/or mixed_bfloat16.")
flags.DEFINE_list("remat", ["none"], "Recomputed pathways: none, full_res and/or all.")
flags.DEFINE_integer("microbatches", 1, "Micro-batches per step: forward and backward one "
                     "after the other, gradients applied once (mcnn_keras/microbatch.py).")
flags.DEFINE_boolean("space_to_depth", False, "Run the full-resolution pathway's 5x5 convs "
                     "as 3x3 convs on the 2x2 space-to-depth image (same weights and "
                     "outputs; mcnn_keras/space_to_depth.py).")
flags.DEFINE_enum("mode", "synthetic", list(bench.MODES),
                  "synthetic: in-memory batches; pipeline: TFRecords through the training "
                  "input; input_only: the input alone; layers: each conv/dense layer alone.")
flags.DEFINE_integer("steps", 10, "Timed steps (batches; calls per layer).")
flags.DEFINE_integer("warmup_steps", 2, "Untimed steps first (tracing, buffers).")
flags.DEFINE_string("train_files", "", "TFRecord globs for pipeline/input_only; '' = a "
                    "temporary synthetic set.")
flags.DEFINE_integer("num_records", 0, "Records of the temporary set; 0 = batch x "
                     "(warmup_steps + steps + 1).")
flags.DEFINE_integer("peak_size", 4096, "n of the n x n matmul that measures the peak.")
flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads (0 = all cores).")
flags.DEFINE_integer("inter_op_threads", 0, "TensorFlow inter-op threads (0 = default).")
flags.DEFINE_string("sweep_output_dir", "", "Write bench.csv, throughput_vs_batch.png and "
                    "memory_vs_batch.png here.")


def setups():
    """The configurations the flags ask for (ValueError naming a bad flag)."""
    try:
        batches = [int(b) for b in FLAGS.batch_size]
    except ValueError:
        raise ValueError(f"--batch_size: integers expected, got {FLAGS.batch_size}") from None
    for name, values, allowed in (("batch_size", batches, None),
                                  ("dtype", FLAGS.dtype, bench.DTYPES),
                                  ("remat", FLAGS.remat, memory.REMAT_MODES)):
        for value in values:
            if allowed is None and value < 1 or allowed is not None and value not in allowed:
                raise ValueError(f"--{name}={value}: expected "
                                 f"{'one of ' + ', '.join(allowed) if allowed else '>= 1'}")
    for name in ("steps", "peak_size", "microbatches"):
        if FLAGS[name].value < 1:
            raise ValueError(f"--{name} must be >= 1")
    train_files = ",".join(resolve_user_path(p) for p in FLAGS.train_files.split(",") if p)
    for b in batches:
        config.check_microbatches(b, FLAGS.microbatches)
    return [bench.Setup(height=FLAGS.height, width=FLAGS.width, batch_size=b, dtype=d,
                        remat=r, microbatches=FLAGS.microbatches,
                        space_to_depth=FLAGS.space_to_depth, mode=FLAGS.mode,
                        steps=FLAGS.steps, warmup_steps=FLAGS.warmup_steps, train_files=train_files,
                        num_records=FLAGS.num_records, peak_size=FLAGS.peak_size,
                        intra_op_threads=FLAGS.intra_op_threads,
                        inter_op_threads=FLAGS.inter_op_threads)
            for d, r, b in itertools.product(FLAGS.dtype, FLAGS.remat, batches)]


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras import topology  # pylint: disable=import-outside-toplevel
    topology.check_size_flags(FLAGS.height, FLAGS.width)
    configs = setups()
    if len(configs) > 1 or FLAGS.sweep_output_dir:
        output_dir = resolve_user_path(FLAGS.sweep_output_dir) if FLAGS.sweep_output_dir else None
        rows = bench.sweep(configs, output_dir)
        return 1 if any("error" in row for row in rows) else 0
    common.configure_threads(FLAGS.intra_op_threads, FLAGS.inter_op_threads)
    for line in bench.run(configs[0]):
        print(json.dumps(line), flush=True)
    return 0


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
