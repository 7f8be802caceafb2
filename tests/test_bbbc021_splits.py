"""random / loco / plate splits of labelled BBBC021 fields."""

import pytest

from mcnn_keras.data import classes
from mcnn_keras.data.conversion import splits
from mcnn_keras.data.conversion import field


def make_fields():
    fields, row = [], 2
    for plate in ("Week1_22123", "Week2_24121", "Week3_25421"):
        for moa, compounds in classes.COMPOUNDS_BY_CLASS.items():
            for compound in compounds:
                for site in "12":
                    fields.append(field.FieldOfView(
                        plate, "B02", site, plate[4], compound, "1.0", moa, ("a", "b", "c"), row))
                    row += 1
    return fields


def test_loco_every_compound_held_out_exactly_once():
    fields = make_fields()
    names = splits.fold_names(fields, "loco")
    assert len(names) == 38 and classes.DMSO not in names
    held_out = []
    for fold in splits.resolve_folds(fields, "loco", "all"):
        train, val = splits.split(fields, "loco", fold, val_fraction=0.2)
        val_compounds = {f.compound for f in val if f.moa != classes.DMSO}
        train_compounds = {f.compound for f in train}
        assert val_compounds == {names[fold]}
        assert not val_compounds & train_compounds
        assert len(train) + len(val) == len(fields)
        held_out.extend(val_compounds)
    assert sorted(held_out) == sorted(names)


def test_fold_by_name_and_errors():
    fields = make_fields()
    assert splits.resolve_folds(fields, "loco", "taxol") == [
        splits.fold_names(fields, "loco").index("taxol")]
    with pytest.raises(ValueError, match="out of range"):
        splits.resolve_folds(fields, "loco", "38")
    with pytest.raises(ValueError, match="neither"):
        splits.resolve_folds(fields, "loco", "aspirin")


def test_random_and_plate():
    fields = make_fields()
    train, val = splits.split(fields, "random", val_fraction=0.1, seed=4)
    assert len(val) == round(0.1 * len(fields)) and len(train) + len(val) == len(fields)
    assert splits.split(fields, "random", seed=4) == (train, val)
    train, val = splits.split(fields, "plate", fold=1)
    assert {f.plate for f in val} == {"Week2_24121"}
    assert "Week2_24121" not in {f.plate for f in train}
