"""What `mcnn-profile` leaves in its output directory, written atomically.

    profiles.parquet      treatment profiles (features_table's layout: Metadata_* + features)
    treatments.csv        per treatment: MoA, role, fields, plates, batches, NSC and NSCB
                          nearest neighbour (compound, concentration, MoA, similarity, correct)
    metrics.json          the summary (accuracies, counts, settings) and both confusion matrices
    confusion_nsc.png     treatment-level confusion matrix under NSC (and _nscb when evaluated)
    embedding.png         2-D PCA of the treatment profiles, coloured by MoA

Usage:

    result = profile.evaluate("fields.parquet")
    write_report(result, "out/profile")
    coordinates, explained = pca_2d(result["treatments"].profiles)
"""

import csv
import io
import os

import numpy as np

from mcnn_keras.io import atomic
from mcnn_keras.io import features_table
from mcnn_keras.io import plots
from mcnn_keras.profiling.profile import moa_order

PROFILES = "profiles.parquet"
TREATMENTS_CSV = "treatments.csv"
METRICS = "metrics.json"
EMBEDDING_PNG = "embedding.png"
OUTPUTS = (PROFILES, TREATMENTS_CSV, METRICS, "confusion_nsc.png", "confusion_nscb.png",
           EMBEDDING_PNG)
_SEP = "|"  # joins a treatment's plates and batches in one cell


def _role(treatments, t):
    if treatments.is_control[t]:
        return "control"
    return "query" if treatments.moa[t] else "unlabelled"


def treatment_rows(result):
    """One dict per treatment: what treatments.csv holds."""
    treatments = result["treatments"]
    rows = []
    for t in range(len(treatments)):
        row = {"compound": treatments.compound[t], "concentration": treatments.concentration[t],
               "moa": treatments.moa[t], "role": _role(treatments, t),
               "num_fields": treatments.num_fields[t],
               "plates": _SEP.join(treatments.plates[t]),
               "batches": _SEP.join(treatments.batches[t])}
        for protocol in ("nsc", "nscb"):
            r = result[protocol][t]
            j = r["neighbor"]
            row.update({
                f"{protocol}_neighbor_compound": "" if j is None else treatments.compound[j],
                f"{protocol}_neighbor_concentration":
                    "" if j is None else treatments.concentration[j],
                f"{protocol}_neighbor_moa": "" if j is None else treatments.moa[j],
                f"{protocol}_similarity": "" if j is None else f"{r['similarity']:.6f}",
                f"{protocol}_correct": "" if j is None else str(r["correct"]).lower(),
                f"{protocol}_evaluated": str(r["evaluated"]).lower()})
        rows.append(row)
    return rows


def write_treatments_csv(rows, path):
    text = io.StringIO()
    if rows:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic.write_text_atomic(path, text.getvalue())
    return path


def write_profiles(result, path):
    """Treatment profiles as a features table (pycytominer reads it as aggregated profiles)."""
    treatments = result["treatments"]
    metadata = [{"Metadata_Compound": treatments.compound[t],
                 "Metadata_Concentration": treatments.concentration[t],
                 "Metadata_MoA": treatments.moa[t], "Metadata_Role": _role(treatments, t),
                 "Metadata_Num_Fields": treatments.num_fields[t],
                 "Metadata_Plates": _SEP.join(treatments.plates[t]),
                 "Metadata_Batches": _SEP.join(treatments.batches[t])}
                for t in range(len(treatments))]
    summary = result["summary"]
    extra = {"profile": {k: summary[k] for k in ("aggregate", "normalize", "batch", "control",
                                                 "features")},
             "source_extra": result.get("extra")}
    names = result.get("feature_names") or features_table.default_feature_names(
        treatments.profiles.shape[1])
    return features_table.write_features(path, metadata, treatments.profiles, extra=extra,
                                         feature_names=names)


def pca_2d(profiles):
    """(T, 2) PCA coordinates of the L2-normalised profiles (cosine geometry) and the
    fraction of variance each axis explains."""
    profiles = np.asarray(profiles, np.float64)
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    unit = np.divide(profiles, norms, out=np.zeros_like(profiles), where=norms > 0)
    centred = unit - unit.mean(axis=0) if len(unit) else unit
    coordinates = np.zeros((len(unit), 2))
    explained = np.zeros(2)
    if len(unit) > 1:
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        k = min(2, len(s))
        coordinates[:, :k] = u[:, :k] * s[:k]
        total = float((s ** 2).sum())
        if total > 0:
            explained[:k] = s[:k] ** 2 / total
    return coordinates, explained


def plot_embedding(treatments, path, title="treatment profiles (PCA)"):
    """Treatment profiles in 2-D, one colour per MoA; the control grey, unknown MoA hollow."""
    plt = plots.plt
    coordinates, explained = pca_2d(treatments.profiles)
    labels = moa_order({m for m, c in zip(treatments.moa, treatments.is_control) if m and not c})
    colours = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(9, 7), layout="constrained")
    groups = [(m, [t for t in range(len(treatments)) if treatments.moa[t] == m
                   and not treatments.is_control[t]], {"color": colours(k % colours.N)})
              for k, m in enumerate(labels)]
    groups.append(("control", list(np.flatnonzero(treatments.is_control)),
                   {"color": "0.6", "marker": "s"}))
    groups.append(("MoA unknown", [t for t in range(len(treatments)) if not treatments.moa[t]
                                   and not treatments.is_control[t]],
                   {"facecolors": "none", "edgecolors": "k"}))
    for name, members, style in groups:
        if members:
            ax.scatter(coordinates[members, 0], coordinates[members, 1], s=36, label=name,
                       **style)
    ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f} %)")
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f} %)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if any(members for _, members, _ in groups):
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return plots.save_figure(fig, path)


def write_report(result, output_dir):
    """Writes the files of the module docstring into `output_dir`; returns their paths."""
    from mcnn_keras.io.output_dirs import make_output_dir  # pylint: disable=import-outside-toplevel
    make_output_dir(output_dir, "output_dir")
    atomic.remove_temporaries(output_dir, OUTPUTS)  # a killed run's
    paths = [write_profiles(result, os.path.join(output_dir, PROFILES)),
             write_treatments_csv(treatment_rows(result),
                                  os.path.join(output_dir, TREATMENTS_CSV))]
    confusion = {p: {"labels": labels, "matrix": matrix.tolist()}
                 for p, (labels, matrix) in result["confusion"].items()}
    paths.append(os.path.join(output_dir, METRICS))
    atomic.write_json_atomic(paths[-1], {**result["summary"], "confusion": confusion})
    for protocol, (labels, matrix) in result["confusion"].items():
        if labels and (protocol == "nsc" or matrix.sum()):
            paths.append(plots.plot_confusion_matrix(
                matrix, labels, os.path.join(output_dir, f"confusion_{protocol}.png"),
                title=f"treatment-level 1-NN MoA, {protocol.upper()} "
                      f"({int(np.trace(matrix))}/{int(matrix.sum())} correct)"))
    paths.append(plot_embedding(result["treatments"], os.path.join(output_dir, EMBEDDING_PNG)))
    return paths
