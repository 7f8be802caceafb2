r"""Benchmark: 1 worker x all cores vs N pinned workers x fewer cores, same global batch.

The paper found several workers per node faster than one. This runs the real
`mcnn-train` binary both ways on the same TFRecords (random full-size images)
and prints JSON with the chief's images/s (first, tracing step excluded),
for each way of syncing the first dense layer's gradient (`--dense_gradient`).
With `--rounds=R` every way runs R times, interleaved, and the medians are
compared (one run of the same way moves by about 4 % on a 2-vCPU VM).

    python tools/bench_workers.py --height=1024 --width=1280 --global_batch=8 \
        --num_workers=2 --steps=10 --dense_gradients=factors,allreduce
"""

import json
import os
import platform
import statistics
import sys
import tempfile

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_integer("height", 1024, "Image height.")
flags.DEFINE_integer("width", 1280, "Image width.")
flags.DEFINE_integer("global_batch", 8, "Global batch, split evenly across workers.")
flags.DEFINE_integer("num_workers", 2, "Workers of the multi-worker run.")
flags.DEFINE_integer("steps", 10, "Timed steps (after one tracing step).")
flags.DEFINE_string("dtype", "float32", "Dtype policy.")
flags.DEFINE_list("dense_gradients", ["factors", "allreduce"],
                  "--dense_gradient values to measure the multi-worker run with.")
flags.DEFINE_integer("rounds", 1, "Measure every way this many times, interleaved (1 worker, "
                     "then each multi-worker mode, again and again); report the medians.")
FLAGS = flags.FLAGS


def run(data_dir, num_workers, dense_gradient="auto"):
    from mcnn_keras.train import launcher  # pylint: disable=import-outside-toplevel
    model_dir = tempfile.mkdtemp(prefix=f"bench-{num_workers}w-")
    command = [sys.executable, "-m", "mcnn_keras.cli.train",
               f"--train_files={data_dir}/train-*.tfrecord", "--val_files=",
               f"--model_dir={model_dir}", f"--height={FLAGS.height}", f"--width={FLAGS.width}",
               f"--batch_size={FLAGS.global_batch // num_workers}", "--epochs=1",
               f"--steps_per_epoch={FLAGS.steps + 1}", f"--dtype={FLAGS.dtype}",
               "--verbose=2", "--tensorboard=false",
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
    from mcnn_keras.experiments.bench.random_records import write_random_records  # pylint: disable=import-outside-toplevel
    data_dir = tempfile.mkdtemp(prefix="bench-data-")
    write_random_records(data_dir, FLAGS.height, FLAGS.width, FLAGS.global_batch * 2,
                         num_shards=2 * FLAGS.num_workers)
    modes = [(1, "auto")] + [(FLAGS.num_workers, mode) for mode in FLAGS.dense_gradients]
    runs = {way: [] for way in modes}
    for _ in range(FLAGS.rounds):
        for way in modes:
            runs[way].append(run(data_dir, *way))
    one = statistics.median(runs[modes[0]])
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "height": FLAGS.height, "width": FLAGS.width, "dtype": FLAGS.dtype,
        "global_batch": FLAGS.global_batch, "steps": FLAGS.steps, "rounds": FLAGS.rounds,
        "one_worker_all_cores_images_per_s": one,
        "one_worker_all_cores_runs": runs[modes[0]]}
    for way in modes[1:]:
        many = statistics.median(runs[way])
        name = f"{FLAGS.num_workers}_pinned_workers_{way[1]}"
        result[f"{name}_images_per_s"] = many
        result[f"{name}_runs"] = runs[way]
        result[f"speedup_{way[1]}"] = many / one
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
