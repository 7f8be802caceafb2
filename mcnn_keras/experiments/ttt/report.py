"""The report of a time-to-train experiment (`ttt`): the table and the plots.

`write_report(exp, results)` writes, from `ttt.run_experiment`'s rows (dicts
with the keys COLUMNS) and each run's metrics.jsonl under
<exp.output_dir>/runs/<name>/:

    <output_dir>/ttt.md, ttt.csv      the table (COLUMNS), in the shape of Table 1
    <output_dir>/ttt_fig9.png         validation top-1 and learning rate per epoch
    <output_dir>/ttt_fig7.png         loss, top-1, top-5 per epoch; top-1 vs wall clock

`ttt` re-exports `COLUMNS`, `table_markdown` and `write_report`.

Usage:

    paths = write_report(exp, results)       # {"ttt.md": path, ...}
    print(table_markdown(exp, results), end="")
"""

import csv
import io
import math
import os
import time

from mcnn_keras.io import atomic
from mcnn_keras.train import run_dir

COLUMNS = ("name", "workers", "cores", "batch_size", "global_batch", "updates_per_epoch",
           "linear_scaling", "base_lr", "peak_lr", "warmup_epochs", "max_lr", "dtype",
           "status", "epochs_to_target", "time_to_target_s", "ttt_min", "epochs_run",
           "best_val_top1", "final_val_top1", "images_per_s", "train_wall_s", "process_s",
           "exit_code", "detail")


def _history(path):
    """A run's metrics.jsonl epochs, or [] before its first epoch."""
    return run_dir.read_metrics(path) if os.path.exists(path) else []


def _fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def table_markdown(exp, results):
    """The Markdown table in the shape of the paper's Table 1, with notes."""
    lines = [f"# Time to {exp.target_accuracy:.0%} validation top-1", "",
             f"{exp.height} x {exp.width}, at most {exp.max_epochs} epochs, dtype {exp.dtype}; "
             f"{exp.notes or 'data: ' + exp.train_files}; {os.cpu_count()} CPUs; "
             f"{time.strftime('%Y-%m-%d %H:%M')}.", "",
             "| configuration | workers | batch / worker | global batch | updates / epoch "
             "| LR rule | peak LR | warmup epochs | epochs to target | TTT (min) | images/s "
             "| best val top-1 | status |", "|" + "---|" * 13]
    for r in results:
        rule = "linear" if r["linear_scaling"] else "fixed"
        workers = f"{r['workers']} x {r['cores']} cores" if r.get("cores") else r["workers"]
        lines.append("| " + " | ".join(_fmt(v) for v in (
            r["name"], workers, r["batch_size"], r["global_batch"], r["updates_per_epoch"],
            rule, r["peak_lr"], r["warmup_epochs"], r["epochs_to_target"], r["ttt_min"],
            r["images_per_s"], r["best_val_top1"], r["status"])) + " |")
    notes = [f"- {r['name']}: {r['status']}: {r['detail']}" for r in results if r["detail"]]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def table_csv(results):
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: r.get(k) for k in COLUMNS} for r in results)
    return out.getvalue()


def _series(history, key, x="epoch"):
    pairs = [(h.get(x), h.get(key)) for h in history if key in h and h.get(x) is not None]
    return [p[0] for p in pairs], [math.nan if p[1] is None else p[1] for p in pairs]


def plot_figures(exp, results, fig9_path, fig7_path):
    """Fig. 9 (top-1 and LR per epoch) and Fig. 7 (loss, top-1, top-5; top-1 vs time)."""
    from mcnn_keras.io import plots  # pylint: disable=import-outside-toplevel
    plt = plots.plt
    histories = [_history(os.path.join(exp.output_dir, "runs", r["name"], run_dir.METRICS))
                 for r in results]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig9, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, layout="constrained")
    fig7, axes = plt.subplots(1, 4, figsize=(20, 4.5), layout="constrained")
    for i, (r, history) in enumerate(zip(results, histories)):
        color, name = colors[i % len(colors)], f"{r['name']} ({r['status']})"
        top.plot(*_series(history, "val_top1"), marker="o", color=color, label=name)
        bottom.plot(*_series(history, "learning_rate"), marker="o", color=color, label=name)
        for ax, key in zip(axes, ("loss", "top1", "top5")):
            ax.plot(*_series(history, f"val_{key}"), color=color, label=f"{name} val")
            ax.plot(*_series(history, key), color=color, linestyle="--", label=f"{name} train")
        minutes, top1 = _series(history, "val_top1", x="wall_s")
        axes[3].plot([m / 60 for m in minutes], top1, marker="o", color=color, label=name)
    for ax in (top, axes[1], axes[3]):
        ax.axhline(exp.target_accuracy, color="gray", linestyle=":", label="target")
    top.set(title="validation top-1 per epoch (Fig. 9)", ylabel="top-1")
    bottom.set(title="learning rate per epoch", xlabel="epoch", ylabel="learning rate")
    for ax, title in zip(axes[:3], ("loss", "top-1", "top-5")):
        ax.set(title=f"{title} per epoch (Fig. 7)", xlabel="epoch")
    axes[3].set(title="validation top-1 vs wall clock", xlabel="minutes of training")
    for ax in (bottom, axes[0]):
        # Log axes need a positive value (runs that failed at once have none).
        if any(y > 0 for line in ax.get_lines() for y in line.get_ydata()):
            ax.set_yscale("log")
    for ax in (top, bottom, *axes):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    plots.save_figure(fig9, fig9_path)
    plots.save_figure(fig7, fig7_path)


def write_report(exp, results):
    """Writes ttt.md, ttt.csv, ttt_fig9.png and ttt_fig7.png; returns their paths."""
    paths = {name: os.path.join(exp.output_dir, name)
             for name in ("ttt.md", "ttt.csv", "ttt_fig9.png", "ttt_fig7.png")}
    atomic.write_text_atomic(paths["ttt.md"], table_markdown(exp, results))
    atomic.write_text_atomic(paths["ttt.csv"], table_csv(results))
    plot_figures(exp, results, paths["ttt_fig9.png"], paths["ttt_fig7.png"])
    return paths
