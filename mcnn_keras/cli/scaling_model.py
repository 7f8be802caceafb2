r"""mcnn-scaling-model: M-CNN images/s and time-to-train on N nodes x W workers, predicted.

Usage:

    mcnn-scaling-model --paper_table1                 # the paper's Table 1 vs the model
    mcnn-scaling-model --paper_table1 --plot=docs/scaling_model.png
    mcnn-scaling-model --paper_table1 --bandwidth_gbps=10 --overlap=0   # what if
    mcnn-scaling-model --paper_dataset_a              # the paper's two Dataset A runs
    mcnn-scaling-model --project                      # this project on the paper's cluster
    mcnn-scaling-model --dataset=A --nodes=1,8,64 --dtype=bfloat16 --dense_gradient=factors
    mcnn-scaling-model --cluster=this_machine --dataset=A --nodes=1 \
        --workers_per_node=2 --local_batch=4 --dense_gradient=allreduce

Prints one JSON line per prediction (`python -m mcnn_keras.cli.scaling_model`
works too). Without a mode flag it predicts this project's trainer (no
overlap, --dense_gradient=auto) for --nodes on --cluster. The model, its
fitted constants and assumptions: mcnn_keras/scaling_model.py and
docs/SCALING_MODEL.md.
"""

import dataclasses
import itertools
import json
import sys

from absl import flags

from mcnn_keras import scaling_model as sm
from mcnn_keras.cli import common
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS
flags.DEFINE_bool("paper_table1", False, "Print the paper's Table 1 (Dataset B) against the "
                  "model: one JSON line per node count.")
flags.DEFINE_bool("paper_dataset_a", False, "Print the paper's two Dataset A runs against "
                  "the model.")
flags.DEFINE_bool("project", False, "Print this project's predictions on the cluster for "
                  "Dataset A and B: sufficient factors vs all-reduce, float32 vs bfloat16.")
flags.DEFINE_string("plot", None, "Write a PNG of predicted vs paper images/s and scaling "
                    "efficiency vs nodes (Table 1) to this file.")
flags.DEFINE_string("cluster", "paper", "paper (2S Xeon Gold 6148, 100 Gb/s Omni-Path) or "
                    "this_machine (2 vCPU, gRPC over loopback).")
flags.DEFINE_list("nodes", None, "Node counts (default 1,2,4,...,128; --project: 1,8,32,128).")
flags.DEFINE_string("dataset", "B", "A (1024 x 1280, 9 093 images) or B (724 x 724 padded to "
                    "768 x 768, 313 282 images).")
flags.DEFINE_integer("workers_per_node", None, "Workers per node (default: the paper's, 4 for "
                     "A, 8 for B).")
flags.DEFINE_integer("local_batch", None, "Batch per worker until the global batch reaches "
                     "--max_global_batch (default: the paper's, 8 for A, 16 for B).")
flags.DEFINE_integer("max_global_batch", 2048, "Cap on the global batch (the paper's 2048); "
                     "beyond it the local batch shrinks.")
flags.DEFINE_float("bandwidth_gbps", None, "Inter-node link in Gbit/s (default: the "
                   "cluster's; paper: 100).")
flags.DEFINE_string("dtype", None, "float32 or bfloat16 (default float32; --project: both).")
flags.DEFINE_string("dense_gradient", None, "auto, factors or allreduce (default: auto; "
                    "paper modes: allreduce; --project: both).")
flags.DEFINE_float("overlap", None, "Fraction of communication hidden under the backward "
                   "pass, 0..1 (default: 1 for the paper's Horovod-style runs, 0 for this "
                   "project).")
flags.DEFINE_float("step_overhead_s", None, "Fixed time per worker step (default: fitted, "
                   "0.97 s on the paper's cluster).")
flags.DEFINE_float("bf16_speedup", 1.7, "Compute speed-up of bfloat16 over float32.")

_CLUSTERS = ("paper", "this_machine")
_DEFAULT_NODES = (1, 2, 4, 8, 16, 32, 64, 128)
_PROJECT_NODES = (1, 8, 32, 128)


def _check_choice(name, choices):
    value = FLAGS[name].value
    if value is not None and value not in choices:
        raise ValueError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_flags():
    """Raises a one-line ValueError naming the first bad flag."""
    modes = [m for m in ("paper_table1", "paper_dataset_a", "project") if FLAGS[m].value]
    if len(modes) > 1:
        raise ValueError(f"--{modes[0]} and --{modes[1]} cannot be combined")
    _check_choice("cluster", _CLUSTERS)
    _check_choice("dataset", tuple(sm.DATASETS))
    _check_choice("dtype", sm.DTYPES)
    _check_choice("dense_gradient", sm.MODES)
    if modes and modes[0].startswith("paper_"):
        for name in ("nodes", "dataset", "workers_per_node", "local_batch", "max_global_batch"):
            if FLAGS[name].present:
                raise ValueError(f"--{name} cannot be combined with --{modes[0]} (the "
                                 "paper's layout is fixed)")
    for name in ("workers_per_node", "local_batch", "max_global_batch"):
        if FLAGS[name].value is not None and FLAGS[name].value < 1:
            raise ValueError(f"--{name} must be >= 1, got {FLAGS[name].value}")
    for name in ("bandwidth_gbps", "bf16_speedup"):
        if FLAGS[name].value is not None and not FLAGS[name].value > 0:
            raise ValueError(f"--{name} must be > 0, got {FLAGS[name].value}")
    if FLAGS.overlap is not None and not 0 <= FLAGS.overlap <= 1:
        raise ValueError(f"--overlap must be in [0, 1], got {FLAGS.overlap}")
    if FLAGS.step_overhead_s is not None and FLAGS.step_overhead_s < 0:
        raise ValueError(f"--step_overhead_s must be >= 0, got {FLAGS.step_overhead_s}")
    return modes[0] if modes else None


def _nodes(default):
    if FLAGS.nodes is None:
        return default
    try:
        nodes = tuple(int(n) for n in FLAGS.nodes)
    except ValueError:
        raise ValueError(f"--nodes must be positive integers, got {','.join(FLAGS.nodes)}") \
            from None
    if not nodes or min(nodes) < 1:
        raise ValueError(f"--nodes must be positive integers, got {','.join(FLAGS.nodes)}")
    return nodes


def _cluster():
    cluster = sm.PAPER if FLAGS.cluster == "paper" else sm.THIS_MACHINE
    if FLAGS.bandwidth_gbps is not None:
        cluster = cluster.with_bandwidth(FLAGS.bandwidth_gbps)
    if FLAGS.step_overhead_s is not None:
        cluster = dataclasses.replace(cluster, step_overhead_s=FLAGS.step_overhead_s)
    return cluster


def _overrides(*names):
    """Setup fields given on the command line (bf16_speedup always)."""
    out = {"bf16_speedup": FLAGS.bf16_speedup}
    for name in names:
        if FLAGS[name].value is not None:
            out[name] = FLAGS[name].value
    return out


def _rounded(prediction):
    """A `predict` dict with its floats rounded for printing."""
    digits = {"images_per_s": 2, "epochs": 2, "ttt_min": 1, "local_batch": 3}
    return {k: round(v, digits.get(k, 4)) if isinstance(v, float) else v
            for k, v in prediction.items()}


def project_predictions(cluster, nodes=_PROJECT_NODES, datasets=("A", "B"),
                        modes=("factors", "allreduce"), dtypes=("float32", "bfloat16"),
                        **overrides):
    """This project on `cluster`: every dataset x dense-gradient mode x dtype x node count."""
    return [_rounded(sm.predict(cluster, sm.project_setup(n, sm.DATASETS[name],
                                                          dense_gradient=mode, dtype=dtype,
                                                          **overrides), sm.DATASETS[name]))
            for name, mode, dtype, n in itertools.product(datasets, modes, dtypes, nodes)]


def paper_dataset_a(cluster, **overrides):
    """The paper's two Dataset A runs against the model (the 8-node one sets A's epochs)."""
    dataset = sm.DATASETS["A"]
    out = []
    for nodes, ttt_min in sorted(sm.PAPER_DATASET_A_TTT_MIN.items()):
        p = sm.predict(cluster, sm.paper_setup(nodes, dataset, **overrides), dataset)
        out.append({"dataset": "A", "nodes": nodes, "global_batch": p["global_batch"],
                    "predicted_images_per_s": round(p["images_per_s"], 2),
                    "epochs": round(p["epochs"], 2), "paper_ttt_min": ttt_min,
                    "predicted_ttt_min": round(p["ttt_min"], 1),
                    "ttt_ratio": round(p["ttt_min"] / ttt_min, 3)})
    return out


def _predictions(cluster):
    dataset = sm.DATASETS[FLAGS.dataset]
    fields = _overrides("dtype", "dense_gradient", "overlap", "workers_per_node",
                        "local_batch", "max_global_batch")
    rows = []
    for n in _nodes(_DEFAULT_NODES):
        setup = sm.project_setup(n, dataset, **fields)
        try:
            setup.check()
        except ValueError as e:
            raise ValueError(f"--nodes={n}: {e}") from None
        rows.append(_rounded(sm.predict(cluster, setup, dataset)))
    return rows


def _project(cluster):
    return project_predictions(
        cluster, nodes=_nodes(_PROJECT_NODES),
        datasets=(FLAGS.dataset,) if FLAGS["dataset"].present else tuple(sm.DATASETS),
        modes=(FLAGS.dense_gradient,) if FLAGS.dense_gradient else ("factors", "allreduce"),
        dtypes=(FLAGS.dtype,) if FLAGS.dtype else sm.DTYPES,
        **_overrides("overlap", "workers_per_node", "local_batch", "max_global_batch"))


def write_plot(cluster, path, overrides):
    """Predicted vs paper images/s and scaling efficiency vs nodes (log-x)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    table = sm.paper_table1(cluster, **overrides)
    nodes = [r["nodes"] for r in table]
    series = {"paper, Table 1": [r["paper_images_per_s"] for r in table],
              "model, paper's setup (Horovod-style overlap)":
                  [r["predicted_images_per_s"] for r in table]}
    dataset = sm.DATASETS["B"]
    for dtype in sm.DTYPES:
        series[f"model, this project ({dtype}, no overlap, auto)"] = [
            sm.predict(cluster, sm.project_setup(n, dataset, dtype=dtype,
                                                 bf16_speedup=FLAGS.bf16_speedup),
                       dataset)["images_per_s"] for n in nodes]
    styles = ["ko", "C0-", "C1--", "C2:"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    for (label, values), style in zip(series.items(), styles):
        left.plot(nodes, values, style, label=label)
        right.plot(nodes, sm.scaling_efficiency(values, nodes), style, label=label)
    left.plot(nodes, [nodes[i] * series["paper, Table 1"][0] for i in range(len(nodes))],
              color="grey", lw=0.8, label="linear from the paper's 1 node")
    left.set_yscale("log")
    left.set_ylabel("images / s")
    left.set_title(f"Dataset B (768 x 768), {cluster.name}")
    right.set_ylabel("scaling efficiency: X(N) / (N X(1))")
    right.axhline(1.0, color="grey", lw=0.8)
    right.set_title("global batch 128/node, capped at 2048 from 16 nodes")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(nodes, [str(n) for n in nodes])
        ax.set_xlabel("nodes (8 workers each)")
        ax.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv):
    """Checks the flags (one-line ValueError naming the flag), then prints JSON lines."""
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    mode = _check_flags()
    plot = resolve_user_path(FLAGS.plot) if FLAGS.plot is not None else None
    if plot is not None and not plot.lower().endswith(".png"):
        raise ValueError(f"--plot must name a .png file, got {FLAGS.plot!r}")
    cluster = _cluster()
    paper_overrides = _overrides("dtype", "dense_gradient", "overlap")
    if mode == "paper_table1":
        rows = sm.paper_table1(cluster, **paper_overrides)
    elif mode == "paper_dataset_a":
        rows = paper_dataset_a(cluster, **paper_overrides)
    elif mode == "project":
        rows = _project(cluster)
    elif plot is None:
        rows = _predictions(cluster)
    else:
        rows = []
    for row in rows:
        print(json.dumps(row), flush=True)
    if plot is not None:
        print(f"wrote {write_plot(cluster, plot, paper_overrides)}", file=sys.stderr)


def run():
    common.run_main(main, import_tensorflow=False)


if __name__ == "__main__":
    run()
