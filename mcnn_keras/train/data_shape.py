"""The image size, channels and classes of a run: flags, else the shards' own.

`mcnn-train` needs only `--train_files`: what the flags leave unset (0 or
'') comes from the manifest next to the training shards
(`data/manifest.py`), then from the first training record (size and
channels), then the defaults (the 13 BBBC021 classes). A flag that is set
and disagrees with the manifest is a ValueError naming both, before any
work: a 5-stain set trained as 3, or 300 compounds under 13 names, would
otherwise fail deep in the input pipeline or, worse, train on wrong labels.

Usage:

    cfg = resolve_data_shape(TrainConfig.from_flat({"train_files": "cp/train-*"}))
    cfg.data.channels, cfg.data.num_classes   # 5, 13 (from cp/manifest.json)
"""

from mcnn_keras.data import dataset, manifest as shards_manifest
from mcnn_keras.data.classes import MOA_CLASSES
from mcnn_keras.io import records


def _agree(flag, given, recorded, path):
    if given and recorded and given != recorded:
        raise ValueError(f"--{flag}={given} disagrees with {path}, which says {recorded}")


def _class_flags(data, found):
    """{num_classes, class_names} from the flags and the manifest's class list."""
    recorded = found.classes if found else ()
    if data.class_names:
        names = tuple(data.class_name_list())
        if recorded and names != recorded:
            raise ValueError(f"--class_names={','.join(names)} disagrees with {found.path}, "
                             f"whose classes are {','.join(recorded)}")
        return {"num_classes": len(names)}
    if recorded:
        _agree("num_classes", data.num_classes, len(recorded), found.path)
        return {"num_classes": len(recorded), "class_names": ",".join(recorded)}
    return {"num_classes": data.num_classes or len(MOA_CLASSES)}


def resolve_data_shape(cfg):
    """`cfg` with height, width, channels, num_classes and class_names resolved."""
    data = cfg.data
    found = shards_manifest.read_manifest_for(data.train_files)
    changes = {}
    if found:
        for flag, recorded in (("height", found.height), ("width", found.width),
                               ("channels", len(found.channels))):
            _agree(flag, getattr(data, flag), recorded, found.path)
            if recorded and not getattr(data, flag):
                changes[flag] = recorded
    if not all(changes.get(k) or getattr(data, k) for k in ("height", "width", "channels")):
        first = dataset.list_files(data.train_files)[0]
        for flag, value in zip(("height", "width", "channels"), records.image_shape(first)):
            changes.setdefault(flag, getattr(data, flag) or value)
    changes.update(_class_flags(data, found))
    return cfg.replace(**changes)
