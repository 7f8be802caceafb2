"""Train / validation splits of labelled fields of view.

- `random`: the paper's image-level split (`val_fraction` of the fields at
  random). Fields are split *before* augmentation, so variants of one field
  stay on one side; other fields of the same well and treatment still land on
  both sides, which flatters the accuracy. The paper split after augmentation,
  which leaks even more.
- `loco`: leave one compound out. Fold i holds out every field of the i-th
  labelled compound (sorted by name; the control class, DMSO unless said
  otherwise, is no fold). 38 folds on the real BBBC021 data. Control fields,
  having no compound to hold out, are split at random with `val_fraction`.
- `plate`: fold i holds out every field of the i-th plate (sorted by name).

Usage:

    folds = fold_names(fields, "loco")                    # ["ALLN", "AZ138", ...]
    train, val = split(fields, "loco", fold=folds.index("taxol"))
"""

import numpy as np

from mcnn_keras.data import classes

SPLITS = ("random", "loco", "plate")


def fold_names(fields, split_name, control=classes.DMSO):
    """The folds of a split: compounds (loco), plates (plate) or ["random"]."""
    if split_name == "random":
        return ["random"]
    if split_name == "loco":
        return sorted({f.compound for f in fields if f.class_name != control})
    if split_name == "plate":
        return sorted({f.plate for f in fields})
    raise ValueError(f"unknown split {split_name!r}; expected one of {list(SPLITS)}")


def resolve_folds(fields, split_name, fold, control=classes.DMSO):
    """Turns a --fold value (index, "all", or a compound/plate name) into indices."""
    names = fold_names(fields, split_name, control)
    if not names:
        raise ValueError(f"split {split_name!r} has no folds: no labelled fields")
    fold = str(fold).strip()
    if fold == "all":
        return list(range(len(names)))
    if fold.lstrip("-").isdigit():
        index = int(fold)
        if not 0 <= index < len(names):
            raise ValueError(f"--fold {index} out of range: split {split_name!r} has "
                             f"{len(names)} folds (0..{len(names) - 1})")
        return [index]
    if fold in names and split_name != "random":
        return [names.index(fold)]
    raise ValueError(f"--fold {fold!r} is neither an index, 'all' nor one of the "
                     f"{split_name} folds {names}")


def _random_mask(count, val_fraction, rng):
    val = np.zeros(count, bool)
    num_val = int(round(count * val_fraction))
    val[rng.permutation(count)[:num_val]] = True
    return val


def split(fields, split_name, fold=0, val_fraction=0.1, seed=0, control=classes.DMSO):
    """Returns (train fields, val fields) for one fold."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    names = fold_names(fields, split_name, control)
    if split_name == "random":
        is_val = _random_mask(len(fields), val_fraction, rng)
    elif split_name == "loco":
        held_out = names[fold]
        is_val = np.array([f.compound == held_out for f in fields], bool)
        controls = np.flatnonzero([f.class_name == control for f in fields])
        is_val[controls] = _random_mask(len(controls), val_fraction, rng)
    else:
        held_out = names[fold]
        is_val = np.array([f.plate == held_out for f in fields], bool)
    train = [f for f, v in zip(fields, is_val) if not v]
    val = [f for f, v in zip(fields, is_val) if v]
    return train, val
