"""Benchmarks of training speed and memory: where every figure of PERFORMANCE.md comes from.

`run(Setup(...))` measures one configuration and returns JSON-ready dicts:

- `synthetic`: the plain step, `plain_steps`: one in-memory batch through the
  compiled training step of the real model, optimizer and loss at the training
  defaults (`training.compile_model`, `train_on_batch`); tools call it too;
- `pipeline`: the same step fed by the real tf.data input from TFRecords, as
  `mcnn-train` reads them (`dataset.train_dataset` with the data config;
  without `train_files`, a temporary set of `random_records`);
- `input_only`: images decoded and batched per second, no model;
- `layers`: forward + backward time of every conv and dense layer alone
  (`layers`).

Speeds are medians over the timed steps after `warmup_steps` (`*_mean`: total
images over total time, stalls included; input_only reports the latter). FLOP
rates use the analytic count (`model_cost(h, w).training_flops`) against the
machine's matmul peak for the dtype, measured in the same process (the best
of several calls: `matmul_peak_gflops`). `peak_rss_bytes` is the process'
peak (ru_maxrss), so `sweep` runs each configuration in a fresh process and
writes a CSV and the paper's Fig. 5a/5c plots (throughput
and memory vs batch, with Fig. 2's analytic activations).

Usage:

    for line in run(Setup(height=1024, width=1280, batch_size=8, mode="synthetic")):
        print(json.dumps(line))
    plain_steps(Setup(batch_size=8, steps=12, warmup_steps=1))["images_per_s_mean"]
    sweep([Setup(batch_size=b) for b in (8, 16, 32)], output_dir="bench-out")
"""

import csv
import dataclasses
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile

from mcnn_keras.core import processes
from mcnn_keras.core.repo import python_path
from mcnn_keras.data.classes import MOA_CLASSES
from mcnn_keras.experiments.bench.random_records import write_random_records
from mcnn_keras.experiments.bench.timing import matmul_peak_gflops, timed
from mcnn_keras.model import memory
from mcnn_keras.model.topology import model_cost

MODES = ("synthetic", "pipeline", "input_only", "layers")
DTYPES = tuple(memory.BYTES_PER_VALUE)
_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclasses.dataclass(frozen=True)
class Setup:
    """One configuration; the fields are also `mcnn-bench`'s flag names."""

    height: int = 1024
    width: int = 1280
    channels: int = 3  # stains per image (5: Cell Painting)
    batch_size: int = 8
    dtype: str = "float32"
    remat: str = "none"
    microbatches: int = 1  # micro-batches per step (microbatch.py)
    space_to_depth: bool = False  # the full-res pathway on the space-to-depth image
    mode: str = "synthetic"
    steps: int = 10
    warmup_steps: int = 2
    train_files: str = ""  # '' = a temporary set of random records (random_records.py)
    num_records: int = 0  # of that set; 0 = batch x (warmup + steps + 1)
    peak_size: int = 4096  # n of the n x n matmul that measures the peak
    intra_op_threads: int = 0
    inter_op_threads: int = 0


# --- The machine -------------------------------------------------------------

def cpu_info(path="/proc/cpuinfo"):
    """'model name [bf16 flags]' of this CPU, e.g. 'AMD EPYC [avx512_bf16]'."""
    name, flags = "unknown", set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name == "unknown":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    return f"{name} [{' '.join(f for f in _CPU_FLAGS if f in flags) or 'no bf16'}]"


def peak_rss_bytes():
    """This process' peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _threads():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    return intra or len(os.sched_getaffinity(0))


# --- Data ----------------------------------------------------------------------

def _input(setup, files):
    """The training input of `mcnn-train` over `files`, and its steps per epoch."""
    from mcnn_keras.train import config  # pylint: disable=import-outside-toplevel
    from mcnn_keras.data import dataset  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import training  # pylint: disable=import-outside-toplevel
    schedule = config.ScheduleConfig(batch_size=setup.batch_size)
    steps_per_epoch, _ = training.plan_steps(schedule, files, [], 1)
    data = config.DataConfig(train_files=",".join(files), val_files="", height=setup.height,
                             width=setup.width, channels=setup.channels,
                             num_classes=len(MOA_CLASSES))
    total = setup.warmup_steps + setup.steps
    stream = dataset.Stream(batch_size=setup.batch_size, steps_per_epoch=steps_per_epoch,
                            num_epochs=-(-total // steps_per_epoch))
    return dataset.train_dataset(files, data, stream)


# --- Measurements --------------------------------------------------------------

def _model(setup):
    """`mcnn-train`'s model, optimizer and loss at the training defaults
    (`train/config.py`: weight decay, classes, schedule)."""
    from mcnn_keras.train import config  # pylint: disable=import-outside-toplevel
    from mcnn_keras.model import microbatch  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import training  # pylint: disable=import-outside-toplevel
    from mcnn_keras.model.network import build_model  # pylint: disable=import-outside-toplevel
    num_classes = len(MOA_CLASSES)
    model = build_model(setup.height, setup.width, setup.channels, num_classes,
                        dtype_policy=setup.dtype,
                        weight_decay=config.ModelConfig().weight_decay, remat=setup.remat,
                        space_to_depth=setup.space_to_depth)
    training.compile_model(model, config.ScheduleConfig(), num_classes=num_classes)
    return microbatch.split_train_step(model, setup.microbatches)


def _speed(setup, times):
    median = statistics.median(times)
    return {"images_per_s": setup.batch_size / median,
            "images_per_s_mean": setup.batch_size * len(times) / sum(times),
            "step_s": median}


def _train_steps(setup, next_batch):
    """Speed of training steps fed by `next_batch()`, timed from the first step after
    warm-up (the wait for input counts)."""
    model = _model(setup)

    def step():
        images, labels = next_batch()
        model.train_on_batch(images, labels)  # returns numpy: the step has finished
    timed(step, setup.warmup_steps)
    return _speed(setup, timed(step, setup.steps))


def plain_steps(setup):
    """The plain step (mode `synthetic`; `tools/bench_train.py` sets `mcnn-train`
    against it): `train_on_batch` of `_model(setup)` on one in-memory batch of
    random uint8 images, no input pipeline. `_speed`'s dict (median and mean
    images/s, median step_s) of `setup.steps` steps after `setup.warmup_steps`."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    shape = (setup.batch_size, setup.height, setup.width, setup.channels)
    images = tf.constant(rng.integers(0, 256, shape, dtype=np.uint8))
    labels = tf.constant(rng.integers(0, len(MOA_CLASSES), (setup.batch_size,)))
    return _train_steps(setup, lambda: (images, labels))


def _pipeline(setup, files):
    batches = iter(_input(setup, files))
    return _train_steps(setup, lambda: next(batches))


def _input_only(setup, files):
    """images_per_s over all timed batches: single batches come from the prefetch
    buffer at once, so their median says nothing."""
    batches = iter(_input(setup, files))
    timed(lambda: next(batches), setup.warmup_steps)
    speed = _speed(setup, timed(lambda: next(batches), setup.steps))
    speed["images_per_s"] = speed["images_per_s_mean"]
    cores = len(os.sched_getaffinity(0))
    return {**speed, "images_per_s_per_core": speed["images_per_s"] / cores}


_MEASURE = {"synthetic": lambda setup, _: plain_steps(setup), "pipeline": _pipeline,
            "input_only": _input_only}


def run(setup):
    """Measures `setup` in this process; returns the JSON lines (dicts)."""
    if setup.mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {setup.mode!r}")
    common = {"cpu": cpu_info(), "cores": len(os.sched_getaffinity(0)),
              "threads": _threads(), **dataclasses.asdict(setup)}
    if setup.mode != "input_only":
        common["peak_gflops_per_s"], common["peak_gflops_per_s_median"] = matmul_peak_gflops(
            setup.dtype, setup.peak_size)
    if setup.mode == "layers":
        from mcnn_keras.experiments.bench.layers import layer_probes  # pylint: disable=import-outside-toplevel
        return [{**common, **line} for line in layer_probes(setup, common["peak_gflops_per_s"])]
    scratch = None
    files = setup.train_files
    try:
        if setup.mode != "synthetic" and not files:
            scratch = tempfile.mkdtemp(prefix="mcnn-bench-")
            count = setup.num_records or setup.batch_size * (
                setup.warmup_steps + setup.steps + 1)
            files = write_random_records(scratch, setup.height, setup.width, count,
                                         channels=setup.channels)
        elif files:
            from mcnn_keras.data import dataset  # pylint: disable=import-outside-toplevel
            files = dataset.list_files(files)
        result = {**common, **_MEASURE[setup.mode](setup, files)}
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if setup.mode != "input_only":
        flops = model_cost(setup.height, setup.width, channels=setup.channels).training_flops
        result["gflops_per_s"] = flops * result["images_per_s"] / 1e9
        result["fraction_of_peak"] = result["gflops_per_s"] / result["peak_gflops_per_s"]
    rss = peak_rss_bytes()
    activations = memory.activation_bytes(setup.height, setup.width, setup.batch_size,
                                          setup.dtype)
    result.update(peak_rss_bytes=rss, activation_bytes=activations,
                  rss_over_activations=rss / activations,
                  estimated_peak_rss_bytes=memory.estimate_peak_bytes(
                      setup.height, setup.width, setup.batch_size, setup.dtype, setup.remat,
                      setup.microbatches, setup.channels))
    return [result]


# --- Sweeps ----------------------------------------------------------------------

def _argv(setup):
    return [f"--{name}={value}" for name, value in dataclasses.asdict(setup).items()]


def sweep(setups, output_dir=None, out=None):
    """Runs each setup in a fresh `mcnn-bench` process (its own peak RSS), prints its
    JSON lines to `out` as they come, and writes CSV + plots to `output_dir`."""
    out = out or sys.stdout
    rows = []
    env = dict(os.environ, PYTHONPATH=python_path())
    for setup in setups:
        group = processes.WorkerGroup(
            [[sys.executable, "-m", "mcnn_keras.cli.bench", *_argv(setup)]], envs=[env],
            output="capture")
        with group:
            ended = group.run(stop_on_failure=False)
        if ended.received:  # SIGTERM/SIGINT: forwarded to the setup's process; stop
            raise SystemExit(ended.code)
        proc = ended.exits[0]
        lines = [json.loads(line) for line in proc.stdout.splitlines()
                 if line.startswith("{")]
        if proc.returncode or not lines:  # e.g. killed for lack of memory: a row anyway
            error = (proc.stderr.strip().splitlines() or [""])[-1]
            lines = [{**dataclasses.asdict(setup), "error": f"exit {proc.returncode}: {error}"}]
        for line in lines:
            out.write(json.dumps(line) + "\n")
            out.flush()
        rows += lines
    if output_dir:
        write_sweep(rows, output_dir)
    return rows


def write_sweep(rows, output_dir):
    """bench.csv, throughput_vs_batch.png and memory_vs_batch.png in `output_dir`."""
    from mcnn_keras.io import atomic  # pylint: disable=import-outside-toplevel
    os.makedirs(output_dir, exist_ok=True)
    names = list(dict.fromkeys(k for row in rows for k in row))
    with atomic.atomic_file(os.path.join(output_dir, "bench.csv")) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, names)
            writer.writeheader()
            writer.writerows(rows)
    return _plot(rows, output_dir)


def _plot(rows, output_dir):
    # plots first: it selects matplotlib's Agg backend before pyplot loads.
    from mcnn_keras.io import plots  # pylint: disable=import-outside-toplevel
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    import matplotlib.ticker  # pylint: disable=import-outside-toplevel
    done = [r for r in rows if "images_per_s" in r and "layer" not in r]
    key = lambda r: (r["dtype"], r["remat"], r.get("microbatches", 1), r["mode"])
    series = sorted({key(r) for r in done})
    paths = []
    for name, ylabel in (("throughput_vs_batch", "images / s"),
                         ("memory_vs_batch", "peak RSS, GB")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for dtype, remat, parts, mode in series:
            points = sorted(((r["batch_size"], r) for r in done
                             if key(r) == (dtype, remat, parts, mode)),
                            key=lambda point: point[0])
            batches = [b for b, _ in points]
            label = f"{dtype}, remat {remat}, {mode}" + (f", {parts} micro-batches"
                                                         if parts > 1 else "")
            if name == "throughput_vs_batch":
                ax.plot(batches, [r["images_per_s"] for _, r in points], "o-", label=label)
                continue
            line, = ax.plot(batches, [r["peak_rss_bytes"] / 1e9 for _, r in points], "o-",
                            label=label)
            h, w = points[0][1]["height"], points[0][1]["width"]
            ax.plot(batches, [memory.estimate_peak_bytes(h, w, b, dtype, remat, parts) / 1e9
                              for b in batches], ":", color=line.get_color(),
                    label=f"{label}: estimate (memory.py)")
        if name == "memory_vs_batch":
            for dtype in sorted({s[0] for s in series}):
                curve = sorted({r["batch_size"]: r["activation_bytes"] / 1e9
                                for r in done if r["dtype"] == dtype}.items())
                ax.plot(*zip(*curve), "--", label=f"analytic activations (Fig. 2), {dtype}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["batch_size"] for r in done}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("batch size per worker")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        paths.append(plots.save_figure(fig, os.path.join(output_dir, f"{name}.png")))
    return paths
