"""Per-treatment accuracy: the protocol behind published BBBC021 figures.

A treatment is a (compound, concentration) pair. Its prediction is the argmax
of the median, over replicates (wells), of the median softmax over the fields
of view of each well. Accuracy is the fraction of treatments whose prediction
equals their class. (Published leave-one-compound-out figures use 12 classes:
evaluate without DMSO, or pass `exclude=("DMSO",)`.)

Usage:

    probs = softmax(model.predict(images))                    # (N, C)
    meta = [m for _, _, m in records.read_examples(path)]     # METADATA_KEYS dicts
    result = per_treatment_accuracy(probs, labels, meta, class_names=MOA_CLASSES)
    result["accuracy"], result["treatments"][0]["predicted_class"]
    recall = per_class_recall(confusion)                      # NaN: no samples
"""

import numpy as np


def _group(indices, key_of):
    groups = {}
    for i in indices:
        groups.setdefault(key_of(i), []).append(i)
    return groups


def per_treatment_accuracy(probabilities, labels, metadata, class_names=None,
                           exclude=()):
    """Treatment-level accuracy from per-field softmax probabilities.

    Args:
      probabilities: (N, C) softmax outputs, one row per field of view.
      labels: (N,) integer true classes.
      metadata: N dicts with at least compound, concentration, plate, well,
        replicate (the `records.METADATA_KEYS` fields).
      class_names: optional names for the predicted classes in the result.
      exclude: class names (from metadata["class_name"]) to leave out.

    Returns a dict: accuracy, num_treatments, num_correct and `treatments`, a
    list (sorted by compound, concentration) of dicts with compound,
    concentration, label, predicted, correct, num_wells, num_fields and
    probabilities (the treatment's median-of-medians vector).
    """
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probabilities.ndim != 2 or not len(probabilities) == len(labels) == len(metadata):
        raise ValueError(f"need (N, C) probabilities, N labels and N metadata dicts; got "
                         f"{probabilities.shape}, {len(labels)} and {len(metadata)}")
    keep = [i for i, m in enumerate(metadata) if m.get("class_name") not in exclude]
    by_treatment = _group(keep, lambda i: (metadata[i]["compound"],
                                           metadata[i]["concentration"]))
    results = []
    for (compound, concentration), members in sorted(by_treatment.items()):
        treatment_labels = set(labels[members].tolist())
        if len(treatment_labels) != 1:
            raise ValueError(f"treatment {compound} at {concentration} has fields of "
                             f"several classes {sorted(treatment_labels)}")
        wells = _group(members, lambda i: (metadata[i].get("plate", ""),
                                           metadata[i].get("well", ""),
                                           metadata[i].get("replicate", "")))
        well_medians = [np.median(probabilities[idx], axis=0) for idx in wells.values()]
        treatment = np.median(well_medians, axis=0)
        label, predicted = treatment_labels.pop(), int(np.argmax(treatment))
        entry = {"compound": compound, "concentration": concentration,
                 "label": int(label), "predicted": predicted,
                 "correct": predicted == label, "num_wells": len(wells),
                 "num_fields": len(members), "probabilities": treatment.tolist()}
        if class_names is not None:
            entry["class_name"] = class_names[label]
            entry["predicted_class"] = class_names[predicted]
        results.append(entry)
    correct = sum(r["correct"] for r in results)
    return {"accuracy": correct / len(results) if results else float("nan"),
            "num_treatments": len(results), "num_correct": correct,
            "treatments": results}


def image_accuracy(probabilities, labels):
    """{"top1", "top5"}: image-level accuracy of (N, C) probabilities."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    top = np.argsort(-probabilities, axis=1)[:, :5]
    return {"top1": float(np.mean(top[:, 0] == labels)),
            "top5": float(np.mean((top == labels[:, None]).any(axis=1)))}


def per_class_recall(confusion):
    """Recall per class from a confusion matrix (rows = true, columns = predicted).

    Returns a float array; NaN for classes without samples.
    """
    confusion = np.asarray(confusion, np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {confusion.shape}")
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)
