r"""Benchmark: 1 worker x all cores vs N pinned workers x fewer cores, same global batch.

The paper found several workers per node faster than one. This runs the real
`mcnn-train` binary both ways on the same TFRecords (random full-size images)
and prints JSON with the chief's images/s (first, tracing step excluded),
for each way of syncing the first dense layer's gradient (`--dense_gradient`).

    python tools/bench_workers.py --height=1024 --width=1280 --global_batch=8 \
        --num_workers=2 --steps=10 --dense_gradients=factors,allreduce
"""

import json
import os
import platform
import sys
import tempfile

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from random_records import write_records  # pylint: disable=wrong-import-position

flags.DEFINE_integer("height", 1024, "Image height.")
flags.DEFINE_integer("width", 1280, "Image width.")
flags.DEFINE_integer("global_batch", 8, "Global batch, split evenly across workers.")
flags.DEFINE_integer("num_workers", 2, "Workers of the multi-worker run.")
flags.DEFINE_integer("steps", 10, "Timed steps (after one tracing step).")
flags.DEFINE_string("dtype", "float32", "Dtype policy.")
flags.DEFINE_list("dense_gradients", ["factors", "allreduce"],
                  "--dense_gradient values to measure the multi-worker run with.")
FLAGS = flags.FLAGS


def run(data_dir, num_workers, dense_gradient="auto"):
    from mcnn_keras import launcher  # pylint: disable=import-outside-toplevel
    model_dir = tempfile.mkdtemp(prefix=f"bench-{num_workers}w-")
    command = [sys.executable, "-m", "mcnn_keras.cli.train",
               f"--train_files={data_dir}/train-*.tfrecord", "--val_files=",
               f"--model_dir={model_dir}", f"--height={FLAGS.height}", f"--width={FLAGS.width}",
               f"--batch_size={FLAGS.global_batch // num_workers}", "--epochs=1",
               f"--steps_per_epoch={FLAGS.steps + 1}", f"--dtype={FLAGS.dtype}",
               "--verbose=2", "--tensorboard=false", "--collective_timeout_s=600",
               f"--dense_gradient={dense_gradient}"]
    if num_workers > 1:
        command.append("--strategy=multi_worker_mirrored")
        code = launcher.launch_local(command, num_workers, pin_cores=True,
                                     stdout=open(os.devnull, "w"))
    else:
        code = launcher.launch_local(command, 1, stdout=open(os.devnull, "w"))
    if code:
        raise RuntimeError(f"{num_workers}-worker run failed with exit code {code}")
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        return json.loads(f.readline())["images_per_s"]


def main(argv):
    del argv
    data_dir = tempfile.mkdtemp(prefix="bench-data-")
    write_records(data_dir, FLAGS.global_batch * 2, FLAGS.height, FLAGS.width,
                  shards=2 * FLAGS.num_workers)
    one = run(data_dir, 1)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "height": FLAGS.height, "width": FLAGS.width, "dtype": FLAGS.dtype,
        "global_batch": FLAGS.global_batch, "steps": FLAGS.steps,
        "one_worker_all_cores_images_per_s": one}
    for mode in FLAGS.dense_gradients:
        many = run(data_dir, FLAGS.num_workers, mode)
        result[f"{FLAGS.num_workers}_pinned_workers_{mode}_images_per_s"] = many
        result[f"speedup_{mode}"] = many / one
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
