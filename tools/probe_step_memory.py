r"""Probe: where the memory of a training step goes (resident set, step by step).

Prints one JSON line with the process' VmRSS and VmHWM (peak) in GB after
importing TensorFlow, after building and compiling the M-CNN, with the uint8
batch in memory, and after each of two `train_on_batch` steps (the first
creates the optimizer's momentum). docs/PERFORMANCE.md ("Why float32 batch
16 stays above 1.3x without remat") reads these figures.

    taskset -c 1 python tools/probe_step_memory.py --batch_size=16 --dtype=float32
    taskset -c 0 python tools/probe_step_memory.py --batch_size=16 --microbatches=2
"""

import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_integer("height", 1024, "Image height.")
flags.DEFINE_integer("width", 1280, "Image width.")
flags.DEFINE_integer("batch_size", 16, "Images per step.")
flags.DEFINE_string("dtype", "float32", "Dtype policy.")
flags.DEFINE_integer("microbatches", 1, "Micro-batches per step (--microbatches).")
flags.DEFINE_integer("threads", 1, "Intra- and inter-op threads.")
FLAGS = flags.FLAGS


def _memory():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: round(int(fields[k].split()[0]) * 1024 / 1e9, 3) for k in ("VmRSS", "VmHWM")}


def main(argv):
    del argv
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    out = {"import": _memory()}
    from mcnn_keras.experiments.bench import throughput as bench  # pylint: disable=import-outside-toplevel
    setup = bench.Setup(height=FLAGS.height, width=FLAGS.width, batch_size=FLAGS.batch_size,
                        dtype=FLAGS.dtype, microbatches=FLAGS.microbatches,
                        mode="synthetic")
    model = bench._model(setup)  # pylint: disable=protected-access
    out["built"] = _memory()
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (FLAGS.batch_size, FLAGS.height, FLAGS.width, 3),
                                      dtype=np.uint8))
    labels = tf.constant(rng.integers(0, 13, (FLAGS.batch_size,)))
    out["inputs"] = _memory()
    for step in range(2):
        model.train_on_batch(images, labels)
        out[f"step{step}"] = _memory()
    print(json.dumps(out))


if __name__ == "__main__":
    app.run(main)
