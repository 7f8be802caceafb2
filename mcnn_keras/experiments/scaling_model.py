"""A scaling model: images/s and time-to-train of the M-CNN on N nodes x W workers.

Predicts the paper's Table 1 (Dataset B on 1..128 Xeon Gold 6148 nodes) from a
few constants, and what this project would take on that cluster. Pure
Python and numpy: the network's numbers come from `topology` (parameters,
FLOPs, `use_factors`), which imports neither TensorFlow nor Keras.

Usage:

    from mcnn_keras.experiments import scaling_model as sm
    sm.paper_table1()                      # [{"nodes": 1, "ratio": ...}, ...]
    sm.predict(sm.PAPER, sm.Setup(nodes=16, workers_per_node=8, local_batch=16),
               sm.DATASETS["B"])           # {"images_per_s": ..., "ttt_min": ...}

The model (one synchronous data-parallel step; n = N x W workers):

    G      = min(N W b0, G_max)            global batch (paper: 128/node, cap 2048)
    b      = G / n                         local batch (shrinks beyond the cap)
    r_w    = R_node / W  (x s_bf16 in bf16)   one worker's training FLOP/s
    t_comp = t0 + b F / r_w                F = training FLOP/image = 3 x forward
                                           (model_cost): 69 GFLOP at 768x768
    t_comm = ring all-reduce: 2(n-1)/n S_ar / B + 2(n-1) alpha
           + (factors only) ring all-gather: (n-1)/n S_ag / B + (n-1) alpha
    S_ar   = 4 x parameters, or 4 x (parameters - fan_in x fan_out) with factors
    S_ag   = G (fan_in + fan_out) x 4 bytes (2 if gathered in bf16)
    t_fac  = 2 (G - b) fan_in fan_out / r_w   extra X^T dY over the global batch
    hidden = min(overlap x t_comm, t_backward = 2/3 (b F / r_w))
    t_step = t_comp + t_fac + t_comm - hidden;   images/s = G / t_step
    TTT    = epochs(G) x images_per_epoch / images/s

Assumptions, and where each constant comes from:

- Compute: a worker's step is a fixed t0 plus time proportional to its
  images (throughput b / t_comp(b) saturates). A node's W workers share
  R_node evenly; other image sizes scale by F. bf16 multiplies R_node by
  s_bf16 = 1.7 (this project's AVX512_BF16 measurement; a 6148 has no bf16
  instructions: bf16 rows mean a bf16-capable node otherwise alike).
- FITTED (2 constants, from 2 of Table 1's 8 rows, solved exactly by
  `calibrate_paper`): R_node and t0. The 1-node row fixes the per-node rate at
  local batch 16; the 128-node row (local batch 2) fixes t0. The other six
  rows are predictions. Result: R_node = 3.42 TFLOP/s (61 % of a node's
  5.6 TFLOP/s fp32 peak: 40 cores x 64 FLOP/cycle x 2.2 GHz AVX-512) and
  t0 = 0.97 s per step. t0 is in the data: at the 2048 cap, local batch 16,
  8, 4, 2 (16..128 nodes) take 3.70, 2.29, 1.60, 1.29 s per step, a straight
  line in b (not in n, as a latency term would be). Each of the 18 pairs of
  rows with different local batches gives R_node 2.8-3.7 TFLOP/s, t0
  0.68-1.03 s, and all 8 rows within 25 %: the fit is not fine-tuned.
- The 1-node row is super-linear against 2 nodes (30 vs 72 img/s). We do NOT
  explain it; we ACCEPT its error within the tolerance: that row's own TTT and
  epochs (960 min, 6.6 epochs of 313 282 images) imply 35.9 img/s, not 30, and
  the calibration uses 35.9. So the model predicts 1.20x the printed 30 but the
  printed TTT exactly. (The 2-node row is the other way round: its TTT implies
  65 img/s, its img/s says 72; rows 4..128 agree with themselves within 3 %.)
- From the hardware, not fitted: the 100 Gb/s Omni-Path link (B = 12.5 GB/s
  per node) and an assumed alpha = 5 us per ring step (MPI latency ~1 us plus
  software). Ring order keeps a node's workers adjacent, so each NIC carries
  one ring edge: the inter-node link bounds the ring when N > 1; on one node
  the ring runs over shared memory (assumed 20 GB/s, 1 us). At 128 nodes the
  78 MB gradient costs 2 x 78 MB / 12.5 GB/s + 2 x 1023 x 5 us = 23 ms.
- Overlap. The paper (TF 1.x, Horovod-style MPI all-reduce from a background
  thread): overlap = 1, i.e. communication hides under the backward pass of
  the layers below; the dense layer holding 97 % of the gradient is the first
  one back-propagated. This project (Keras 3 + MultiWorkerMirroredStrategy):
  overlap = 0, gradients are all-reduced after the backward pass (measured:
  the 0.8 s loopback all-reduce adds to the step, docs/PERFORMANCE.md).
- Sufficient factors: the all-gathered factors replace the dense kernel's
  all-reduce, but every worker computes X^T dY over the whole global batch.
  Gradients stay fp32 (fp32 variables); factors go in the compute dtype.
- Epochs to 99 % top-1 vs global batch: Table 1 itself, linear in log2 G
  (the four 2048 rows averaged: 15.25), clamped outside 128..2048. Dataset A
  has no epochs in the paper: we use the same curve scaled to pass through
  the 21.7 epochs its 8-node run (31 min, G = 256) implies under this model;
  its 1-node run (5 h 31 min) is then a check, and fails: the model says
  3 h 25 min. As for B, the paper's 1-node run is slower per node than its
  multi-node runs (1.6x here, 1.2x for B); the model has no term for that.
- "This machine" (`THIS_MACHINE`): the 2-vCPU development VM; alpha and B
  fitted (least squares, relative) to the loopback all-reduce / all-gather
  times of docs/PERFORMANCE.md (alpha = 0.92 ms, B = 203 MB/s: gRPC on one
  core); R_node from 1.25 img/s at 1024x1280, batch 8, fp32; t0 = 5 ms (the
  per-step cost of `fit` measured there). It predicts the measured
  2-workers/1-worker ratios at global batch 8: 0.88 with all-reduce
  (measured 0.85-0.88) and 1.00 with factors (measured 0.98-1.03).
"""

import dataclasses
import math

import numpy as np

from mcnn_keras.model.topology import (DENSE_GRADIENT_MODES, DENSE_UNITS, flat_features,
                                 model_cost, use_factors)

MiB = 2**20
DTYPES = ("float32", "bfloat16")
BF16_SPEEDUP = 1.7
MAX_GLOBAL_BATCH = 2048

MODES = DENSE_GRADIENT_MODES


def model_numbers(height, width):
    """(parameters, training FLOPs per image = 3 x forward, fan_in of the big dense layer)."""
    cost = model_cost(height, width)
    return cost.parameters, cost.training_flops, flat_features(height, width)


# Paper Table 1, Dataset B: nodes, epochs, global batch, TTT (min), images/s.
PAPER_TABLE1 = ((1, 6.6, 128, 960, 30), (2, 8, 256, 642, 72), (4, 8.7, 512, 320, 141),
                (8, 12, 1024, 240, 262), (16, 15.9, 2048, 150, 553),
                (32, 14.9, 2048, 85, 893), (64, 15, 2048, 61, 1284),
                (128, 15.2, 2048, 50, 1587))
# Paper's Dataset A runs (4 workers x 8 per node): nodes -> TTT minutes.
PAPER_DATASET_A_TTT_MIN = {1: 5 * 60 + 31, 8: 31}
# Loopback collectives, 2 workers (docs/PERFORMANCE.md, medians):
# (kind, workers, bytes per worker, seconds).
LOOPBACK_MEASUREMENTS = (("all_reduce", 2, 162.4 * MiB, 0.835),
                         ("all_reduce", 2, 2.42 * MiB, 0.0121),
                         ("all_gather", 2, 1.26 * MiB, 0.0116))


@dataclasses.dataclass(frozen=True)
class Link:
    """One hop of a ring: latency per ring step (s) and bandwidth (bytes/s)."""

    alpha_s: float
    bytes_per_s: float

    def all_reduce_s(self, n, nbytes):
        """Ring all-reduce of nbytes over n workers."""
        if n <= 1 or nbytes <= 0:
            return 0.0
        return 2 * (n - 1) / n * nbytes / self.bytes_per_s + 2 * (n - 1) * self.alpha_s

    def all_gather_s(self, n, total_bytes):
        """Ring all-gather whose result (all workers' pieces) is total_bytes."""
        if n <= 1 or total_bytes <= 0:
            return 0.0
        return (n - 1) / n * total_bytes / self.bytes_per_s + (n - 1) * self.alpha_s


def fit_link(measurements=LOOPBACK_MEASUREMENTS):
    """Least-squares (relative) alpha and bandwidth of a ring from timed collectives."""
    rows = []
    for kind, n, nbytes, seconds in measurements:
        if kind == "all_reduce":
            row = (2 * (n - 1) / n * nbytes, 2 * (n - 1))
        elif kind == "all_gather":
            row = ((n - 1) * nbytes, n - 1)  # nbytes per worker: n x nbytes in all
        else:
            raise ValueError(f"unknown collective {kind!r}")
        rows.append([v / seconds for v in row])
    rows = np.array(rows)
    (inv_bw, alpha), *_ = np.linalg.lstsq(rows, np.ones(len(rows)), rcond=None)
    if alpha < 0:  # no latency resolvable: fit the bandwidth alone
        alpha, inv_bw = 0.0, rows[:, 0].sum() / (rows[:, 0] ** 2).sum()
    return Link(float(alpha), float(1 / inv_bw))


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A node type and its interconnect."""

    name: str
    node_flops: float  # effective training FLOP/s of one node (fp32), fitted
    step_overhead_s: float  # t0 per worker step, fitted
    network: Link  # between nodes (bounds the ring when nodes > 1)
    intra_node: Link  # between the workers of one node

    def with_bandwidth(self, gbps):
        """The same cluster with a network of `gbps` Gbit/s."""
        if not gbps > 0:
            raise ValueError(f"bandwidth must be > 0 Gb/s, got {gbps}")
        return dataclasses.replace(self, network=Link(self.network.alpha_s, gbps * 1e9 / 8))


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A training set and the paper's layout for it."""

    name: str
    height: int
    width: int
    train_images: int
    workers_per_node: int
    local_batch: int


DATASETS = {"A": Dataset("A", 1024, 1280, 9093, 4, 8),
            "B": Dataset("B", 724, 724, 313282, 8, 16)}


@dataclasses.dataclass(frozen=True)
class Setup:
    """How one run is laid out and synchronized."""

    nodes: int
    workers_per_node: int
    local_batch: int  # per worker, until the global batch reaches the cap
    max_global_batch: int = MAX_GLOBAL_BATCH
    dtype: str = "float32"
    dense_gradient: str = "allreduce"  # auto | factors | allreduce
    overlap: float = 0.0  # fraction of communication hidden under the backward pass
    bf16_speedup: float = BF16_SPEEDUP

    def check(self):
        """Raises ValueError naming the bad field."""
        for name in ("nodes", "workers_per_node", "local_batch", "max_global_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.dense_gradient not in MODES:
            raise ValueError(f"dense_gradient must be one of {', '.join(MODES)}, "
                             f"got {self.dense_gradient!r}")
        if not 0 <= self.overlap <= 1:
            raise ValueError(f"overlap must be in [0, 1], got {self.overlap}")
        if not self.bf16_speedup > 0:
            raise ValueError(f"bf16_speedup must be > 0, got {self.bf16_speedup}")
        if self.global_batch < self.workers:
            raise ValueError(f"max_global_batch {self.max_global_batch} leaves less than one "
                             f"image for each of {self.workers} workers")

    @property
    def workers(self):
        return self.nodes * self.workers_per_node

    @property
    def global_batch(self):
        return min(self.workers * self.local_batch, self.max_global_batch)


def step(cluster, setup, height, width):
    """Per-step times of `setup` on `cluster` at height x width, as a dict.

    compute_s = t0 + b F / r_w; factor_compute_s: the extra X^T dY over the
    global batch; comm_s: every collective; exposed_comm_s: what overlap leaves.
    """
    setup.check()
    n, g = setup.workers, setup.global_batch
    b = g / n
    parameters, image_flops, fan_in = model_numbers(height, width)
    fan_out = DENSE_UNITS
    worker_flops = cluster.node_flops / setup.workers_per_node
    if setup.dtype == "bfloat16":
        worker_flops *= setup.bf16_speedup
    image_s = image_flops / worker_flops
    factors = use_factors(setup.dense_gradient, g, fan_in, fan_out)
    link = cluster.network if setup.nodes > 1 else cluster.intra_node
    if factors:
        reduce_bytes = 4 * (parameters - fan_in * fan_out)
        gather_bytes = g * (fan_in + fan_out) * (2 if setup.dtype == "bfloat16" else 4)
        factor_s = 2 * (g - b) * fan_in * fan_out / worker_flops
    else:
        reduce_bytes, gather_bytes, factor_s = 4 * parameters, 0, 0.0
    comm = link.all_reduce_s(n, reduce_bytes) + link.all_gather_s(n, gather_bytes)
    hidden = min(setup.overlap * comm, 2 / 3 * b * image_s)
    compute = cluster.step_overhead_s + b * image_s
    step_s = compute + factor_s + comm - hidden
    return dict(global_batch=g, local_batch=b, uses_factors=factors, compute_s=compute,
                factor_compute_s=factor_s, comm_s=comm, exposed_comm_s=comm - hidden,
                step_s=step_s, images_per_s=g / step_s)


def epochs_to_target(global_batch, table=PAPER_TABLE1):
    """Epochs to 99 % top-1 at a global batch: Table 1, linear in log2(G), clamped."""
    if not global_batch > 0:
        raise ValueError(f"global batch must be > 0, got {global_batch}")
    by_batch = {}
    for _, epochs, g, _, _ in table:
        by_batch.setdefault(g, []).append(epochs)
    batches = sorted(by_batch)
    return float(np.interp(math.log2(global_batch), [math.log2(g) for g in batches],
                           [float(np.mean(by_batch[g])) for g in batches]))


def predict(cluster, setup, dataset, epochs=None):
    """`step` plus epochs (default: `dataset_epochs`) and TTT in minutes, as a dict."""
    s = step(cluster, setup, dataset.height, dataset.width)
    if epochs is None:
        epochs = dataset_epochs(dataset, s["global_batch"])
    return {"dataset": dataset.name, "nodes": setup.nodes, "workers": setup.workers,
            "dtype": setup.dtype, "dense_gradient": setup.dense_gradient,
            "overlap": setup.overlap, **s, "epochs": epochs,
            "ttt_min": epochs * dataset.train_images / s["images_per_s"] / 60}


def paper_setup(nodes, dataset=None, **overrides):
    """The paper's layout: W and b from the dataset, Horovod-style overlap, all-reduce."""
    dataset = dataset or DATASETS["B"]
    fields = dict(nodes=nodes, workers_per_node=dataset.workers_per_node,
                  local_batch=dataset.local_batch, dense_gradient="allreduce", overlap=1.0)
    return Setup(**{**fields, **overrides})


def project_setup(nodes, dataset=None, **overrides):
    """This project's trainer on the paper's layout: no overlap, auto dense gradient."""
    return paper_setup(nodes, dataset, **{"overlap": 0.0, "dense_gradient": "auto",
                                          **overrides})


def calibrate_paper(network=Link(5e-6, 100e9 / 8), intra_node=Link(1e-6, 20e9),
                    anchors=(1, 128), iterations=50):
    """Solves R_node and t0 exactly from two Table 1 rows (see the module docstring).

    The 1-node anchor uses the throughput its own TTT implies (35.9 img/s);
    other anchors use the printed images/s.
    """
    rows = {row[0]: row for row in PAPER_TABLE1}
    dataset = DATASETS["B"]
    flops = model_numbers(dataset.height, dataset.width)[1]
    cluster = Cluster("paper: 2S Xeon Gold 6148, 100 Gb/s Omni-Path", 3e12, 1.0,
                      network, intra_node)
    for _ in range(iterations):  # the exposed communication depends on the unknowns
        lhs, rhs = [], []
        for nodes in anchors:
            _, epochs, _, ttt_min, rate = rows[nodes]
            if nodes == 1:  # what its TTT implies: 35.9 img/s
                rate = epochs * dataset.train_images / (ttt_min * 60)
            setup = paper_setup(nodes)
            s = step(cluster, setup, dataset.height, dataset.width)
            # t_step - exposed comm = t0 + b W F / R_node
            lhs.append([1.0, s["local_batch"] * setup.workers_per_node * flops])
            rhs.append(s["global_batch"] / rate - s["exposed_comm_s"] - s["factor_compute_s"])
        t0, inv_rate = np.linalg.solve(np.array(lhs), np.array(rhs))
        cluster = dataclasses.replace(cluster, node_flops=float(1 / inv_rate),
                                      step_overhead_s=float(t0))
    return cluster


def _this_machine():
    link = fit_link()
    dataset = DATASETS["A"]
    t0, batch, images_per_s = 0.005, 8, 1.25  # docs/PERFORMANCE.md, fp32, 2 vCPU
    flops = model_numbers(dataset.height, dataset.width)[1]
    return Cluster("this machine: 2 vCPU EPYC Zen 4, gRPC over loopback",
                   batch * flops / (batch / images_per_s - t0), t0, link, link)


PAPER = calibrate_paper()
THIS_MACHINE = _this_machine()


def _implied_dataset_a_epochs(cluster=PAPER, nodes=8):
    """Epochs of the paper's Dataset A run on `nodes` nodes, given this model's speed."""
    dataset = DATASETS["A"]
    s = step(cluster, paper_setup(nodes, dataset), dataset.height, dataset.width)
    epochs = s["images_per_s"] * PAPER_DATASET_A_TTT_MIN[nodes] * 60 / dataset.train_images
    return epochs, s["global_batch"]


# Dataset A: (epochs, global batch) of the 8-node run (31 min) under this model.
DATASET_A_ANCHOR = _implied_dataset_a_epochs()


def dataset_epochs(dataset, global_batch):
    """Epochs to target: Table 1's curve for B; for A the same curve's shape,
    scaled to pass through the epochs implied by the paper's 8-node A run."""
    if dataset.name == "A":
        epochs, batch = DATASET_A_ANCHOR
        return epochs * epochs_to_target(global_batch) / epochs_to_target(batch)
    return epochs_to_target(global_batch)


def paper_table1(cluster=PAPER, **overrides):
    """Table 1 against the model: one dict per row (overrides change the setup)."""
    out = []
    for nodes, epochs, g, ttt_min, images_per_s in PAPER_TABLE1:
        p = predict(cluster, paper_setup(nodes, **overrides), DATASETS["B"])
        out.append({"nodes": nodes, "paper_images_per_s": images_per_s,
                    "predicted_images_per_s": round(p["images_per_s"], 1),
                    "ratio": round(p["images_per_s"] / images_per_s, 3),
                    "paper_ttt_min": ttt_min, "predicted_ttt_min": round(p["ttt_min"], 1),
                    "paper_epochs": epochs, "epochs": round(p["epochs"], 2),
                    "paper_global_batch": g, "global_batch": p["global_batch"],
                    "local_batch": p["local_batch"], "step_s": round(p["step_s"], 3),
                    "exposed_comm_s": round(p["exposed_comm_s"], 4)})
    return out


def scaling_efficiency(images_per_s, nodes):
    """images/s(N) / (N x images/s(1)) for parallel lists starting at 1 node."""
    if nodes[0] != 1:
        raise ValueError("scaling efficiency needs the 1-node figure first")
    return [x / (n * images_per_s[0]) for x, n in zip(images_per_s, nodes)]


