r"""Benchmark: the `mcnn-train` binary vs a plain in-memory `train_on_batch` loop.

Both train the same full-resolution M-CNN with the same optimizer and loss;
the binary reads real TFRecord shards through the tf.data pipeline, with all
its callbacks (LR per step, checkpoints, metrics, progress). Prints JSON.

    python tools/bench_train.py --height=1024 --width=1280 --batch_size=8 \
        --steps=12 --dtypes=float32,mixed_bfloat16
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_integer("height", 1024, "Image height.")
flags.DEFINE_integer("width", 1280, "Image width.")
flags.DEFINE_integer("batch_size", 8, "Batch size (one worker).")
flags.DEFINE_integer("steps", 12, "Timed steps per measurement (after warmup).")
flags.DEFINE_list("dtypes", ["float32", "mixed_bfloat16"], "Dtype policies to measure.")
flags.DEFINE_integer("shards", 8, "TFRecord shards to write.")
FLAGS = flags.FLAGS


def time_binary(data_dir, dtype):
    """images/s the binary reports (its first, tracing step excluded)."""
    model_dir = tempfile.mkdtemp(prefix="bench-run-")
    steps = FLAGS.steps + 1
    command = [sys.executable, "-m", "mcnn_keras.cli.train",
               f"--train_files={data_dir}/train-*.tfrecord", "--val_files=",
               f"--model_dir={model_dir}", f"--height={FLAGS.height}", f"--width={FLAGS.width}",
               f"--batch_size={FLAGS.batch_size}", "--epochs=1", f"--steps_per_epoch={steps}",
               f"--dtype={dtype}", "--verbose=2", "--tensorboard=false"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        metrics = json.loads(f.readline())
    return {"images_per_s": metrics["images_per_s"], "process_wall_s": wall}


def time_plain_loop(dtype):
    """Speeds of the plain in-memory `train_on_batch` loop (`throughput.plain_steps`:
    same model, optimizer and loss at the training defaults), its first step excluded."""
    from mcnn_keras.experiments.bench import throughput  # pylint: disable=import-outside-toplevel
    return throughput.plain_steps(throughput.Setup(
        height=FLAGS.height, width=FLAGS.width, batch_size=FLAGS.batch_size, dtype=dtype,
        steps=FLAGS.steps, warmup_steps=1))


def main(argv):
    del argv
    from mcnn_keras.experiments.bench.random_records import write_random_records  # pylint: disable=import-outside-toplevel
    data_dir = tempfile.mkdtemp(prefix="bench-data-")
    write_random_records(data_dir, FLAGS.height, FLAGS.width, FLAGS.batch_size * 4, FLAGS.shards)
    results = {"machine": f"{platform.processor() or platform.machine()}, "
                          f"{os.cpu_count()} cores",
               "height": FLAGS.height, "width": FLAGS.width, "batch_size": FLAGS.batch_size,
               "steps": FLAGS.steps}
    for dtype in FLAGS.dtypes:
        binary = time_binary(data_dir, dtype)
        plain = time_plain_loop(dtype)
        # Both over all timed steps: the binary's images_per_s is a mean too.
        results[dtype] = {"binary": binary, "plain_train_on_batch": plain,
                          "binary_vs_plain": binary["images_per_s"] / plain["images_per_s_mean"]}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
