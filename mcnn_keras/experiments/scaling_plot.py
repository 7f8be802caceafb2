"""The scaling model's figure: predicted vs paper images/s and scaling efficiency (Table 1).

Usage:

    from mcnn_keras.experiments import scaling_plot
    scaling_plot.write_plot("docs/scaling_model.png")                   # the paper's cluster
    scaling_plot.write_plot("what_if.png", sm.PAPER.with_bandwidth(10), overlap=0.0)
"""

from mcnn_keras.experiments import scaling_model as sm
from mcnn_keras.io import plots

PAPER_SERIES = "paper, Table 1"


def plot_series(cluster=sm.PAPER, **overrides):
    """(nodes, {label: images/s per node count}): the paper, its setup, this project.

    `overrides`: setup fields of the paper's runs (`paper_table1`); of them
    bf16_speedup also applies to this project's (no overlap, auto) runs.
    """
    table = sm.paper_table1(cluster, **overrides)
    nodes = [r["nodes"] for r in table]
    series = {PAPER_SERIES: [r["paper_images_per_s"] for r in table],
              "model, paper's setup (Horovod-style overlap)":
                  [r["predicted_images_per_s"] for r in table]}
    dataset = sm.DATASETS["B"]
    speedup = {k: v for k, v in overrides.items() if k == "bf16_speedup"}
    for dtype in sm.DTYPES:
        series[f"model, this project ({dtype}, no overlap, auto)"] = [
            sm.predict(cluster, sm.project_setup(n, dataset, dtype=dtype, **speedup),
                       dataset)["images_per_s"] for n in nodes]
    return nodes, series


def write_plot(path, cluster=sm.PAPER, **overrides):
    """Writes `plot_series` as a PNG to `path` (log-x over nodes); returns `path`."""
    nodes, series = plot_series(cluster, **overrides)
    plt = plots.plt  # the Agg backend, set by `plots`
    styles = ["ko", "C0-", "C1--", "C2:"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    for (label, values), style in zip(series.items(), styles):
        left.plot(nodes, values, style, label=label)
        right.plot(nodes, sm.scaling_efficiency(values, nodes), style, label=label)
    left.plot(nodes, [n * series[PAPER_SERIES][0] for n in nodes],
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
    return plots.save_figure(fig, path)
