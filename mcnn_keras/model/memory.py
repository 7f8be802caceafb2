"""Memory of a training step, analytically, and the batch that fits a budget.

Plain Python (no TensorFlow): what `--batch_size=auto`, `--microbatches=auto`
and `mcnn-bench` use.
The activations kept for the backward pass are the paper's Fig. 2 figure (one
tensor per convolution, `topology.model_cost`), halved in bfloat16; the
pathways chosen by `--remat` (`REMAT_MODES`) keep none of theirs and recompute
them one image at a time instead (model.py), so only one image's worth of them
is alive at once; with `--microbatches=n` (microbatch.py) only one n-th of
the batch's activations is. Every step also holds its input images (`input_bytes`: the
scaled image every pathway reads, kept for the backward pass, and the uint8
batches). The peak RSS of a training process is then estimated as
`ACTIVATION_OVERHEAD` x (activations + inputs) + the weights' state +
`RUNTIME_BYTES`, constants measured on real runs (see their comment).

Usage:

    activation_bytes(1024, 1280, 32)                        # 10.95e9 (Fig. 2)
    activation_bytes(1024, 1280, 32, "mixed_bfloat16")      # half of it
    pick_batch_size(1024, 1280, "float32", "full_res", 22e9)  # the largest that fits
    cfg = resolve_memory(cfg)  # --batch_size/--microbatches=auto (0) -> numbers, logged
"""

import json
import logging
import os

from mcnn_keras.core import cluster
from mcnn_keras.core.image_size import padded_size
from mcnn_keras.model.topology import CONVS_PER_PATHWAY, FILTERS, SCALES, model_cost

_LOG = logging.getLogger(__name__)

# --remat: which pathways recompute their activations in the backward pass.
REMAT_MODES = ("none", "full_res", "all")
_REMAT_SCALES = {"none": (), "full_res": (1,), "all": SCALES}

BYTES_PER_VALUE = {"float32": 4, "mixed_bfloat16": 2}

# Measured peak RSS (GB) and analytic activations + inputs B = `activation_bytes`
# + `input_bytes`: `mcnn-train` on real TFRecords at 1024 x 1280 (engineering
# notes section 7): fp32 batch 16 9.9 (B 5.85; the paper's ratio to the
# activations alone is 1.81x), batch 32 17.0 (B 11.70; 1.55x), bf16 batch 32
# 9.7 (B 5.98), batch 64 18.3 (B 11.96); and 2026-11-24 on the EPYC: `mcnn-bench`
# bf16 batch 2 2.32 (B 0.37), `mcnn-train` at 128 x 128, batch 429, 3.90 (B 1.96).
# Beyond weights, gradients and momentum (3 x 162 MiB at 1024 x 1280, from the
# parameter count), RUNTIME_BYTES (TensorFlow, the shuffle buffer) and
# ACTIVATION_OVERHEAD x B (gradients, the backward pass' temporaries) are the
# round values with which the estimate covers all six (B above counts the
# uint8 batch twice; now UINT8_BATCH_COPIES times): 2-10 % above them. Five
# `mcnn-bench` runs in micro-batches (float32 batch 16 in 2 and 4, 6.49 and
# 4.76 GB; batch 64 in 2 and 4, 17.94 and 11.06 GB; bf16 batch 128 in 8, 9.44
# GB; docs/PERFORMANCE.md) set the last two: the uint8 batch counts 4 times
# (the step's, the prefetched one, copies the step makes of them) and a
# micro-batched step MICROBATCH_BYTES more; then they too are 0-12 % below it.
ACTIVATION_OVERHEAD = 1.40
RUNTIME_BYTES = 1.3e9
UINT8_BATCH_COPIES = 4
MICROBATCH_BYTES = 0.65e9
WEIGHT_COPIES = 3  # weights, gradients, momentum (float32 in every policy)
# --memory_budget_gb=0: MemTotal minus this share (at least _MIN_MARGIN_BYTES)
# for the system, the page cache and whatever else runs.
_MARGIN = 0.15
_MIN_MARGIN_BYTES = 2 * 2**30


def remat_scales(mode):
    """The pathway scales `--remat=mode` recomputes."""
    if mode not in _REMAT_SCALES:
        raise ValueError(f"remat must be one of {', '.join(REMAT_MODES)}, got {mode!r}")
    return _REMAT_SCALES[mode]


def _bytes_per_value(dtype):
    if dtype not in BYTES_PER_VALUE:
        raise ValueError(f"dtype must be one of {', '.join(BYTES_PER_VALUE)}, got {dtype!r}")
    return BYTES_PER_VALUE[dtype]


def pathway_activation_values(height, width):
    """{scale: conv activation values per image} of each pathway (3 tensors)."""
    h, w = padded_size(height), padded_size(width)
    return {scale: CONVS_PER_PATHWAY * (h // scale) * (w // scale) * filters
            for scale, filters in zip(SCALES, FILTERS)}


def activation_bytes(height, width, batch, dtype="float32", remat="none"):
    """Analytic bytes of the conv activations a step keeps for its backward pass.

    With remat "none" this is the paper's Fig. 2 (`model_cost`'s
    conv_activation_bytes x batch); recomputed pathways keep nothing but need
    one image's activations at a time while they are recomputed.
    """
    size = _bytes_per_value(dtype)
    per_image = model_cost(height, width, bytes_per_value=size).conv_activation_bytes
    values = pathway_activation_values(height, width)
    recomputed = [values[s] * size for s in remat_scales(remat)]
    return batch * (per_image - sum(recomputed)) + max(recomputed, default=0)


def input_bytes(height, width, batch, dtype="float32", microbatches=1, channels=3):
    """Bytes of a step's input images: the scaled (padded) image in the compute
    dtype, which every pathway reads and the backward pass keeps (one
    micro-batch's), and `UINT8_BATCH_COPIES` uint8 batches."""
    h, w = padded_size(height), padded_size(width)
    micro = batch // microbatches
    return (micro * h * w * channels * _bytes_per_value(dtype)
            + batch * UINT8_BATCH_COPIES * height * width * channels)


def weight_copies(microbatches=1):
    """Float32 copies of the weights a step holds: weights, gradients, momentum,
    and with micro-batches the running sum of their gradients."""
    return WEIGHT_COPIES + (microbatches > 1)


def estimate_peak_bytes(height, width, batch, dtype="float32", remat="none", microbatches=1,
                        channels=3):
    """Estimated peak RSS of a training process (see the constants above).

    With micro-batches (microbatch.py) only one micro-batch's activations are kept.
    """
    weights = weight_copies(microbatches) * 4 * model_cost(height, width,
                                                           channels=channels).parameters
    kept = (activation_bytes(height, width, batch // microbatches, dtype, remat)
            + input_bytes(height, width, batch, dtype, microbatches, channels))
    runtime = RUNTIME_BYTES + (MICROBATCH_BYTES if microbatches > 1 else 0)
    return ACTIVATION_OVERHEAD * kept + weights + runtime


def pick_batch_size(height, width, dtype, remat, budget_bytes, microbatches=1, channels=3):
    """The largest per-replica batch, a multiple of `microbatches`, whose
    `estimate_peak_bytes` fits `budget_bytes`.

    Raises ValueError when not even one image per micro-batch fits.
    """
    estimate = lambda micro: estimate_peak_bytes(height, width, micro * microbatches, dtype,
                                                 remat, microbatches, channels)
    fixed = estimate(0)
    micro = int((budget_bytes - fixed) // (estimate(1) - fixed))
    # Guard the float division at the boundary: the estimate decides.
    while micro > 0 and estimate(micro) > budget_bytes:
        micro -= 1
    if micro < 1:
        raise ValueError(
            f"--batch_size=auto: not even one {height}x{width} image"
            f"{' per micro-batch' if microbatches > 1 else ''} fits the memory budget of "
            f"{budget_bytes / 1e9:.2f} GB (that needs about {estimate(1) / 1e9:.2f} GB); "
            f"raise --memory_budget_gb, use --remat, "
            f"--microbatches or --dtype=mixed_bfloat16")
    return micro * microbatches


def _meminfo(path):
    values = {}
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if rest.split():
                values[key] = int(rest.split()[0]) * 1024  # kB
    return values


def workers_on_this_host(environ=None):
    """Training tasks of TF_CONFIG on this task's host (1 without TF_CONFIG)."""
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return 1
    cluster.parse_tf_config(text)  # one-line ValueError if broken
    config = json.loads(text)
    task = config["task"]
    host = config["cluster"][task["type"]][task["index"]].rpartition(":")[0]
    return max(1, sum(address.rpartition(":")[0] == host
                      for job in cluster.TRAINING_JOBS
                      for address in config["cluster"].get(job, [])))


def default_budget_bytes(meminfo_path="/proc/meminfo", environ=None):
    """(bytes, why): this host's MemTotal minus a margin, split among its workers.

    MemTotal rather than MemAvailable: every worker must pick the same batch.
    """
    total = _meminfo(meminfo_path)["MemTotal"]
    workers = workers_on_this_host(environ)
    budget = (total - max(_MARGIN * total, _MIN_MARGIN_BYTES)) / workers
    why = (f"MemTotal {total / 1e9:.1f} GB minus {_MARGIN:.0%} (at least "
           f"{_MIN_MARGIN_BYTES / 2**30:.0f} GiB)" + (f", / {workers} workers on this host"
                                                      if workers > 1 else ""))
    return budget, why


def fewest_microbatches(height, width, dtype, remat, batch, budget_bytes, channels=3):
    """The fewest micro-batches dividing `batch` whose step fits the budget, or None."""
    return next((n for n in range(1, batch + 1) if batch % n == 0 and estimate_peak_bytes(
        height, width, batch, dtype, remat, n, channels) <= budget_bytes), None)


def _budget(schedule, meminfo_path, environ):
    if schedule.memory_budget_gb:
        return schedule.memory_budget_gb * 1e9, "--memory_budget_gb"
    return default_budget_bytes(meminfo_path, environ)


def resolve_memory(cfg, meminfo_path="/proc/meminfo", environ=None):
    """`cfg` (a `config.TrainConfig`) with `--batch_size=auto` and
    `--microbatches=auto` (0) replaced by picks for the memory budget.

    Needs the image size resolved. Logs what it picked and why; warns when a
    given batch and micro-batch count exceed the budget (such a process is
    likely to be killed for lack of memory) and names the count that fits.
    """
    schedule, model, data = cfg.schedule, cfg.model, cfg.data
    budget, why = _budget(schedule, meminfo_path, environ)
    if not schedule.batch_size:
        return _pick_batch(cfg.replace(microbatches=model.microbatches or 1), budget, why)
    batch = schedule.batch_size
    fewest = fewest_microbatches(data.height, data.width, model.dtype, model.remat, batch,
                                 budget, data.channels)
    if not model.microbatches:
        if fewest is None:
            raise ValueError(
                f"--microbatches=auto: --batch_size={batch} does not fit the "
                f"{budget / 1e9:.2f} GB memory budget ({why}) even one image at a time; "
                f"raise --memory_budget_gb, use --remat or --dtype=mixed_bfloat16")
        _LOG.info("--microbatches=auto: %d micro-batches of %d images: the fewest whose step "
                  "fits the %.2f GB memory budget (%s), estimated peak %.2f GB", fewest,
                  batch // fewest, budget / 1e9, why, estimate_peak_bytes(
                      data.height, data.width, batch, model.dtype, model.remat, fewest,
                      data.channels) / 1e9)
        return cfg.replace(microbatches=fewest)
    peak = estimate_peak_bytes(data.height, data.width, batch, model.dtype, model.remat,
                               model.microbatches, data.channels)
    if peak > budget:
        _LOG.warning(
            "--batch_size=%d (%dx%d, %s, remat %s, micro-batches %d) needs about %.1f GB by "
            "the memory model (mcnn_keras/model/memory.py), more than the %.2f GB budget (%s): the "
            "process may be killed for lack of memory. %s", batch, data.height, data.width,
            model.dtype, model.remat, model.microbatches, peak / 1e9, budget / 1e9, why,
            f"--microbatches={fewest} fits (the same update)." if fewest else
            "Use a smaller batch, --remat or --dtype=mixed_bfloat16.")
    return cfg


def _pick_batch(cfg, budget, why):
    """cfg with `--batch_size=auto` replaced by `pick_batch_size`, logged."""
    model, data = cfg.model, cfg.data
    parts = model.microbatches
    batch = pick_batch_size(data.height, data.width, model.dtype, model.remat, budget, parts,
                            data.channels)
    act = activation_bytes(data.height, data.width, batch // parts, model.dtype, model.remat)
    inputs = input_bytes(data.height, data.width, batch, model.dtype, parts, data.channels)
    weights = weight_copies(parts) * 4 * model_cost(data.height, data.width,
                                                    channels=data.channels).parameters
    _LOG.info(
        "--batch_size=auto: %d images per replica (%dx%d, %s, remat %s%s): "
        "estimated peak %.2f GB = %.2f x (%.2f GB activations + %.2f GB input images) + "
        "%.2f GB weights, gradients, momentum%s + %.1f GB runtime, within the %.2f GB "
        "budget (%s)", batch, data.height, data.width, model.dtype, model.remat,
        f", {parts} micro-batches of {batch // parts}" if parts > 1 else "",
        estimate_peak_bytes(data.height, data.width, batch, model.dtype, model.remat,
                            parts, data.channels) / 1e9,
        ACTIVATION_OVERHEAD, act / 1e9, inputs / 1e9, weights / 1e9,
        ", summed gradients" if parts > 1 else "", RUNTIME_BYTES / 1e9, budget / 1e9, why)
    return cfg.replace(batch_size=batch)
