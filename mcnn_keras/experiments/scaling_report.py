"""What `mcnn-scaling-model` prints: the scaling model's predictions as rounded rows.

Pure Python, like `scaling_model`: no TensorFlow, no matplotlib (the figure is
`scaling_plot`'s).

Usage:

    from mcnn_keras.experiments import scaling_report
    rows = scaling_report.report_rows(options, given)   # options: ScalingModelOptions
    scaling_report.paper_dataset_a(sm.PAPER)            # the paper's two Dataset A runs
    scaling_report.project_predictions(sm.PAPER, nodes=(1, 8), datasets=("A",))
"""

import dataclasses
import itertools

from mcnn_keras.experiments import scaling_model as sm

# --nodes when not given: predictions for --nodes, and --project.
DEFAULT_NODES = (1, 2, 4, 8, 16, 32, 64, 128)
PROJECT_NODES = (1, 8, 32, 128)


def cluster_for(o):
    """The cluster of --cluster, with --bandwidth_gbps and --step_overhead_s if given."""
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


def paper_overrides(o):
    """The setup fields the paper's layout leaves to the flags: dtype, dense_gradient, overlap."""
    return _overrides(o, "dtype", "dense_gradient", "overlap")


def _rounded(prediction):
    """A `predict` dict with its floats rounded for printing."""
    digits = {"images_per_s": 2, "epochs": 2, "ttt_min": 1, "local_batch": 3}
    return {k: round(v, digits.get(k, 4)) if isinstance(v, float) else v
            for k, v in prediction.items()}


def project_predictions(cluster, nodes=PROJECT_NODES, datasets=("A", "B"),
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
    """This project's trainer for --nodes (ValueError naming --nodes for a bad layout)."""
    dataset = sm.DATASETS[o.dataset]
    fields = _overrides(o, "dtype", "dense_gradient", "overlap", "workers_per_node",
                        "local_batch", "max_global_batch")
    rows = []
    for n in o.node_counts(DEFAULT_NODES):
        setup = sm.project_setup(n, dataset, **fields)
        try:
            setup.check()
        except ValueError as e:
            raise ValueError(f"--nodes={n}: {e}") from None
        rows.append(_rounded(sm.predict(cluster, setup, dataset)))
    return rows


def _project(o, cluster, given):
    """--project: both datasets, modes and dtypes unless the flags name one."""
    return project_predictions(
        cluster, nodes=o.node_counts(PROJECT_NODES),
        datasets=(o.dataset,) if "dataset" in given else tuple(sm.DATASETS),
        modes=(o.dense_gradient,) if o.dense_gradient else ("factors", "allreduce"),
        dtypes=(o.dtype,) if o.dtype else sm.DTYPES,
        **_overrides(o, "overlap", "workers_per_node", "local_batch", "max_global_batch"))


def report_rows(o, given=()):
    """The rows `mcnn-scaling-model` prints for the checked options `o`.

    `given`: the flags given on the command line (--project keeps both
    datasets unless --dataset is one of them). Without a mode flag: this
    project's trainer for --nodes, or no rows when only --plot is asked for.
    """
    cluster = cluster_for(o)
    mode = o.run_mode()
    if mode == "paper_table1":
        return sm.paper_table1(cluster, **paper_overrides(o))
    if mode == "paper_dataset_a":
        return paper_dataset_a(cluster, **paper_overrides(o))
    if mode == "project":
        return _project(o, cluster, given)
    if o.plot is not None:
        return []
    return _predictions(o, cluster)
