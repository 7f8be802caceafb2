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
fitted constants and assumptions: mcnn_keras/experiments/scaling_model.py and
docs/SCALING_MODEL.md.
"""

import dataclasses
import itertools
import json
import sys

from mcnn_keras.experiments import scaling_model as sm
from mcnn_keras.experiments import scaling_options
from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path

SECTIONS = config_flags.define_sections({"scaling model": scaling_options.ScalingModelOptions})

_DEFAULT_NODES = (1, 2, 4, 8, 16, 32, 64, 128)
_PROJECT_NODES = (1, 8, 32, 128)


def _cluster(o):
    cluster = sm.PAPER if o.cluster == "paper" else sm.THIS_MACHINE
    if o.bandwidth_gbps is not None:
        cluster = cluster.with_bandwidth(o.bandwidth_gbps)
    if o.step_overhead_s is not None:
        cluster = dataclasses.replace(cluster, step_overhead_s=o.step_overhead_s)
    return cluster


def _overrides(o, *names):
    """Setup fields given on the command line (bf16_speedup always)."""
    out = {"bf16_speedup": o.bf16_speedup}
    for name in names:
        if getattr(o, name) is not None:
            out[name] = getattr(o, name)
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


def _predictions(o, cluster):
    dataset = sm.DATASETS[o.dataset]
    fields = _overrides(o, "dtype", "dense_gradient", "overlap", "workers_per_node",
                        "local_batch", "max_global_batch")
    rows = []
    for n in o.node_counts(_DEFAULT_NODES):
        setup = sm.project_setup(n, dataset, **fields)
        try:
            setup.check()
        except ValueError as e:
            raise ValueError(f"--nodes={n}: {e}") from None
        rows.append(_rounded(sm.predict(cluster, setup, dataset)))
    return rows


def _project(o, cluster, given):
    return project_predictions(
        cluster, nodes=o.node_counts(_PROJECT_NODES),
        datasets=(o.dataset,) if "dataset" in given else tuple(sm.DATASETS),
        modes=(o.dense_gradient,) if o.dense_gradient else ("factors", "allreduce"),
        dtypes=(o.dtype,) if o.dtype else sm.DTYPES,
        **_overrides(o, "overlap", "workers_per_node", "local_batch", "max_global_batch"))


def write_plot(cluster, path, overrides, bf16_speedup):
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
                                                 bf16_speedup=bf16_speedup),
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
    given = config_flags.given(SECTIONS)
    o = scaling_options.check_options(scaling_options.ScalingModelOptions(**config_flags.values(SECTIONS)), given)
    mode = o.run_mode()
    plot = resolve_user_path(o.plot) if o.plot is not None else None
    cluster = _cluster(o)
    paper_overrides = _overrides(o, "dtype", "dense_gradient", "overlap")
    if mode == "paper_table1":
        rows = sm.paper_table1(cluster, **paper_overrides)
    elif mode == "paper_dataset_a":
        rows = paper_dataset_a(cluster, **paper_overrides)
    elif mode == "project":
        rows = _project(o, cluster, given)
    elif plot is None:
        rows = _predictions(o, cluster)
    else:
        rows = []
    for row in rows:
        print(json.dumps(row), flush=True)
    if plot is not None:
        print(f"wrote {write_plot(cluster, plot, paper_overrides, o.bf16_speedup)}", file=sys.stderr)


def run():
    common.run_main(main, help_sections=SECTIONS, import_tensorflow=False)


if __name__ == "__main__":
    run()
