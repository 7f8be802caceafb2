r"""Benchmark: one all-reduce (or all-gather) across local workers. Prints JSON.

Starts `--num_workers` processes on 127.0.0.1 (MultiWorkerMirroredStrategy,
the same set-up as training), optionally pinned to their own cores, and times
`--repeats` all-reduces (mean) of a float32 gradient of `--mib` MiB (162 MiB:
the full M-CNN's trainable weights), split into `--tensors` pieces as Keras
hands a gradient list to the strategy. The chief prints the JSON.
`--op=all_gather` times instead the gather of `--mib` MiB from every worker,
as `FactoredDense` does with its sufficient factors.

    python tools/bench_allreduce.py --num_workers=2 --mib=162 --pin_cores
    python tools/bench_allreduce.py --op=all_gather --mib=1.26   # 4 x 82 432 floats
"""

import json
import os
import sys
import time

from absl import app, flags

flags.DEFINE_integer("num_workers", 2, "Local worker processes.")
flags.DEFINE_float("mib", 162.0, "Gradient size in MiB (float32).")
flags.DEFINE_integer("tensors", 1, "Split the gradient into this many tensors.")
flags.DEFINE_integer("repeats", 5, "Timed all-reduces (after one warm-up).")
flags.DEFINE_enum("op", "all_reduce", ["all_reduce", "all_gather"], "Collective to time.")
flags.DEFINE_enum("implementation", "AUTO", ["AUTO", "RING"], "Collective implementation.")
flags.DEFINE_boolean("pin_cores", True, "Pin each worker to its own cores.")
flags.DEFINE_boolean("worker", False, "Internal: run as one worker (TF_CONFIG set).")
FLAGS = flags.FLAGS


def run_worker():
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from absl import logging  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import distribute  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import launcher  # pylint: disable=import-outside-toplevel
    logging.set_verbosity(logging.WARNING)
    launcher.configure_threads_from_env()
    strategy = distribute.make_strategy("multi_worker_mirrored", FLAGS.implementation,
                                        collective_timeout_s=300)
    task = distribute.task_info(strategy)
    elements = int(FLAGS.mib * 2**20 / 4)
    sizes = [elements // FLAGS.tensors] * FLAGS.tensors
    sizes[-1] += elements - sum(sizes)
    grads = [tf.constant(np.full(n, task.worker_index + 1, np.float32)) for n in sizes]

    @tf.function
    def all_reduce():
        def step():
            ctx = tf.distribute.get_replica_context()
            if FLAGS.op == "all_gather":
                return [tf.reduce_mean(g) for g in ctx.all_gather(grads, axis=0)]
            return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
        return strategy.run(step)

    result = all_reduce()  # warm-up: traces, sets up the collective group
    expected = (task.num_workers + 1) / 2
    value = float(tf.reshape(strategy.experimental_local_results(result)[0][0], [-1])[0])
    seconds = []
    for _ in range(FLAGS.repeats):
        started = time.perf_counter()
        out = all_reduce()
        tf.nest.map_structure(lambda t: t.numpy(),
                              strategy.experimental_local_results(out))  # wait for it
        seconds.append(time.perf_counter() - started)
    if task.is_chief:
        seconds.sort()
        print(json.dumps({
            "benchmark": FLAGS.op, "num_workers": task.num_workers,
            "mib": FLAGS.mib, "tensors": FLAGS.tensors,
            "implementation": FLAGS.implementation, "pinned": FLAGS.pin_cores,
            "threads_per_worker": int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0),
            "correct": abs(value - expected) < 1e-6,
            "median_s": round(seconds[len(seconds) // 2], 4), "min_s": round(seconds[0], 4),
            "max_s": round(seconds[-1], 4),
            "algbw_gib_per_s": round(FLAGS.mib / 1024 / seconds[len(seconds) // 2], 3),
            "tensorflow": tf.__version__}), flush=True)


def main(argv):
    del argv
    if FLAGS.worker:
        return run_worker()
    from mcnn_keras.core.repo import python_path  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import launcher  # pylint: disable=import-outside-toplevel
    command = [sys.executable, os.path.abspath(__file__), "--worker"] + [
        f"--{name}={FLAGS[name].value}" for name in ("op", "mib", "tensors", "repeats",
                                                     "implementation", "pin_cores")]
    env = {"TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": python_path()}
    return launcher.launch_local(command, FLAGS.num_workers, pin_cores=FLAGS.pin_cores,
                                 extra_env=env, log=open(os.devnull, "w"))


if __name__ == "__main__":
    app.run(main)
