"""PNG plots people would rather look at than numbers.

Usage:

    plot_training_curves(read_metrics("run/metrics.jsonl"), "run/training_curves.png")
    plot_confusion_matrix(confusion, class_names, "run/eval/confusion_matrix.png")
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from mcnn_keras.io import atomic  # pylint: disable=wrong-import-position


def save_figure(fig, path):
    """Saves `fig` to `path` atomically (format from the extension) and closes it."""
    try:
        with atomic.atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_training_curves(history, path):
    """Loss, top-1 (train and validation) and learning rate per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    panels = [("loss", ["loss", "val_loss"], "loss"),
              ("top-1 accuracy", ["top1", "val_top1"], "accuracy"),
              ("learning rate", ["learning_rate"], "learning rate")]
    for ax, (title, keys, ylabel) in zip(axes, panels):
        for key in keys:
            values = [h.get(key) for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values],
                        marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def plot_confusion_matrix(confusion, class_names, path, title="confusion matrix"):
    """Row-normalised confusion matrix (rows: true class) with counts."""
    confusion = np.asarray(confusion)
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros(confusion.shape, float),
                           where=totals > 0)
    size = max(6, 0.6 * len(class_names))
    fig, ax = plt.subplots(figsize=(size + 2, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(confusion.shape[0]):
        for j in range(confusion.shape[1]):
            if confusion[i, j]:
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if normalised[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, path)
