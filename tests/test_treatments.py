"""Per-treatment accuracy (median over fields, then wells, then argmax)."""

import math

import numpy as np
import pytest

from mcnn_keras.serve import treatments


def meta(compound, conc, plate, well, cls="A"):
    return {"class_name": cls, "compound": compound, "concentration": conc,
            "plate": plate, "well": well, "site": "1", "replicate": plate[-1]}


def test_medians_over_fields_then_wells_decide_the_treatment():
    # Treatment t1 (class 0): well 1 has one outlier field; the field-level
    # mean would flip it, the medians do not. Well 3 is wrong, outvoted 2:1.
    probs = np.array([
        [0.9, 0.1], [0.8, 0.2], [0.0, 1.0],     # plate1/B02: median 0.8
        [0.7, 0.3], [0.6, 0.4], [0.65, 0.35],   # plate2/B02: median 0.65
        [0.1, 0.9], [0.2, 0.8], [0.3, 0.7],     # plate3/B02: median 0.2
        [0.4, 0.6], [0.45, 0.55], [0.3, 0.7],   # t2 (class 0) predicted 1: wrong
    ])
    labels = [0] * 12
    metadata = ([meta("t1", "1.0", "p1", "B02")] * 3 + [meta("t1", "1.0", "p2", "B02")] * 3
                + [meta("t1", "1.0", "p3", "B02")] * 3 + [meta("t2", "0.3", "p1", "C02")] * 3)
    result = treatments.per_treatment_accuracy(probs, labels, metadata, class_names=("x", "y"))
    assert result["num_treatments"] == 2 and result["num_correct"] == 1
    assert result["accuracy"] == 0.5
    t1, t2 = result["treatments"]
    assert (t1["compound"], t1["num_wells"], t1["num_fields"]) == ("t1", 3, 9)
    np.testing.assert_allclose(t1["probabilities"], [0.65, 0.35])
    assert t1["correct"] and not t2["correct"] and t2["predicted_class"] == "y"


def test_exclude_and_inconsistent_labels():
    probs = np.eye(2)
    metadata = [meta("DMSO", "0.0", "p1", "B02", "DMSO"), meta("t", "1", "p1", "B03")]
    result = treatments.per_treatment_accuracy(probs, [1, 1], metadata, exclude=("DMSO",))
    assert result["num_treatments"] == 1 and result["accuracy"] == 1.0
    with pytest.raises(ValueError, match="several classes"):
        treatments.per_treatment_accuracy(probs, [0, 1], [metadata[1]] * 2)
    with pytest.raises(ValueError, match="N metadata"):
        treatments.per_treatment_accuracy(probs, [0], metadata)


def test_per_class_recall():
    recall = treatments.per_class_recall([[3, 1, 0], [0, 0, 0], [2, 0, 2]])
    assert recall[0] == 0.75 and math.isnan(recall[1]) and recall[2] == 0.5
    with pytest.raises(ValueError, match="square"):
        treatments.per_class_recall([[1, 2]])
