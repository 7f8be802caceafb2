r"""Benchmark: images/s of `train_on_batch` alone (no input pipeline, no network).

One process, random in-memory uint8 images, the training recipe's model and
optimizer (`training.compile_model`). Run it pinned in parallel to find what
several workers per node could reach without any communication. Prints JSON.

    TF_NUM_INTRAOP_THREADS=2 python tools/bench_plain_step.py --batch_size=8
    for core in 0 1; do TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
        taskset -c $core python tools/bench_plain_step.py --batch_size=4 & done; wait
"""

import json
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_integer("height", 1024, "Image height.")
flags.DEFINE_integer("width", 1280, "Image width.")
flags.DEFINE_integer("batch_size", 8, "Batch size.")
flags.DEFINE_integer("steps", 6, "Timed steps (after one tracing step).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import numpy as np  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import training  # pylint: disable=import-outside-toplevel
    from mcnn_keras.model.network import build_model  # pylint: disable=import-outside-toplevel
    model = build_model(FLAGS.height, FLAGS.width, weight_decay=5e-5)
    from mcnn_keras.train import config  # pylint: disable=import-outside-toplevel
    training.compile_model(model, config.ScheduleConfig(), num_classes=13)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (FLAGS.batch_size, FLAGS.height, FLAGS.width, 3), np.uint8)
    labels = rng.integers(0, 13, (FLAGS.batch_size,))
    model.train_on_batch(images, labels)
    started = time.perf_counter()
    for _ in range(FLAGS.steps):
        model.train_on_batch(images, labels)
    seconds = (time.perf_counter() - started) / FLAGS.steps
    print(json.dumps({"batch_size": FLAGS.batch_size, "height": FLAGS.height,
                      "width": FLAGS.width, "step_s": round(seconds, 3),
                      "images_per_s": round(FLAGS.batch_size / seconds, 4),
                      "intra_op_threads": os.environ.get("TF_NUM_INTRAOP_THREADS")}))


if __name__ == "__main__":
    app.run(main)
