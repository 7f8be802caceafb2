"""The training data's normalisation, found for an export.

Shards written by the converter have its `normalization.json` and
illumination maps beside them (or where their manifest's `maps_file` points,
for one fold of several); the export copies them into `preprocessing/` so that
raw fields are normalised at inference exactly as in training. Synthetic
shards have none: the export then says why.

Usage:

    shard_dirs, source, why_not = find_training_statistics("data/train-*.tfrecord")
    record = copy_statistics(source, "export.tmp/preprocessing")   # for mcnn_export.json
    channels, channels_from = training_channels(source, shard_dirs)
"""

import json
import os

from mcnn_keras.data.conversion import normalization as conversion_normalization
from mcnn_keras.export.info import DEFAULT_CHANNELS_FROM, PREPROCESSING, default_channels
from mcnn_keras.io import storage


def _read_json(path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _statistics_dir(shard_dir):
    """Where the converter's normalization.json for shards in `shard_dir` is:
    beside them, or (one fold of several) where their manifest's maps_file points."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if tf.io.gfile.exists(os.path.join(shard_dir, conversion_normalization.STATS_JSON)):
        return shard_dir
    manifest = os.path.join(shard_dir, "manifest.json")
    if tf.io.gfile.exists(manifest):
        maps_file = (_read_json(manifest).get("normalization") or {}).get("maps_file")
        if maps_file:
            directory = os.path.normpath(os.path.dirname(os.path.join(shard_dir, maps_file)))
            if tf.io.gfile.exists(os.path.join(directory, conversion_normalization.STATS_JSON)):
                return directory
    return None


def find_training_statistics(train_files):
    """Where the training shards `train_files` (comma-separated globs or a list)
    came from: (their directories, the directory holding the converter's
    normalization.json or None, why there is none or None)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mcnn_keras.data import dataset  # pylint: disable=import-outside-toplevel
    if not train_files:
        return [], None, "no training files given"
    try:
        files = dataset.list_files(train_files, check=False)
        shard_dirs = sorted({os.path.dirname(f) for f in files})
        found = {_statistics_dir(d) for d in shard_dirs}
    except (ValueError, OSError, tf.errors.OpError) as e:
        return [], None, f"training files {train_files!r}: {str(e).splitlines()[0]}"
    found.discard(None)
    if not found:
        return shard_dirs, None, (f"no {conversion_normalization.STATS_JSON} beside the training shards "
                                  f"{train_files!r} (data not written by the converter)")
    if len(found) > 1:
        return shard_dirs, None, (f"the training shards come from several conversions "
                                  f"({', '.join(sorted(found))}): their statistics are "
                                  f"not merged")
    return shard_dirs, found.pop(), None


def copy_statistics(source, target):
    """Copies normalization.json + its maps file from `source` into `target`;
    returns the "normalization" record of the export's JSON (checked loadable)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    summary = _read_json(os.path.join(source, conversion_normalization.STATS_JSON))
    files = [conversion_normalization.STATS_JSON, summary.get("maps_file", conversion_normalization.MAPS_NPZ)]
    os.makedirs(target)
    for name in files:
        tf.io.gfile.copy(os.path.join(source, name), os.path.join(target, name))
    plates = sorted(conversion_normalization.load_statistics(target))  # what inference will load
    return {"method": "illumination map per plate x channel (blurred mean image, floored), "
                      "then the 0.1st..99.9th percentiles to 0..255 (data/conversion/normalization.py)",
            "directory": PREPROCESSING, "files": files,
            "source": storage.absolute(source),
            "plates": plates, "sigma": summary.get("sigma"),
            "channels": summary.get("channels")}


def training_channels(statistics_dir, shard_dirs, count=3):
    """The names of the model's `count` channels, in order, and where they came
    from: the converter's statistics or manifest, else `default_channels`."""
    candidates = ([os.path.join(statistics_dir, conversion_normalization.STATS_JSON)] if statistics_dir
                  else []) + [os.path.join(d, "manifest.json") for d in shard_dirs]
    for path in candidates:
        try:
            channels = _read_json(path).get("channels")
        except Exception:  # pylint: disable=broad-except  # missing or not JSON: next one
            continue
        if isinstance(channels, list) and len(channels) == count:
            return [str(c) for c in channels], path
    return list(default_channels(count)), DEFAULT_CHANNELS_FROM
