"""What the manifest next to a set of shards says about them.

The converters (`conversion/job.py`) and `mcnn-synthetic` write
`manifest.json` beside the shards they write: the records' image size, the
channel names in order and the class names in label order. `mcnn-train`,
given only `--train_files`, takes those from here (`train/data_shape.py`),
and a flag that disagrees is an error naming both.

Usage:

    described = read_manifest_for("data/cp/train-*.tfrecord")   # None: no manifest
    described.channels, described.classes, described.height     # ("DNA", ...), ...
"""

import dataclasses
import json
import posixpath

MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class ShardsManifest:
    """The parts of a manifest training relies on (empty / 0 = not recorded)."""
    path: str
    channels: tuple = ()
    classes: tuple = ()
    height: int = 0
    width: int = 0


def _first_match(globs):
    """The first file (sorted) of the first comma-separated glob that matches one."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (gfile globs URLs too)
    for pattern in filter(None, (g.strip() for g in globs.split(","))):
        found = sorted(tf.io.gfile.glob(pattern))
        if found:
            return found[0]
    return None


def _strings(value, path, key):
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{path}: {key!r} must be a list of names, got {value!r}")
    return tuple(value)


def parse_manifest(manifest, path):
    """The `ShardsManifest` of a manifest dict read from `path` (ValueError if malformed)."""
    size = manifest.get("image_size") or [manifest.get("height", 0), manifest.get("width", 0)]
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and v >= 0 for v in size)):
        raise ValueError(f"{path}: 'image_size' must be [height, width], got {size!r}")
    return ShardsManifest(path, _strings(manifest.get("channels"), path, "channels"),
                          _strings(manifest.get("classes"), path, "classes"), *size)


def read_manifest_for(globs):
    """The manifest in the folder of the first training shard, or None if there is none."""
    first = _first_match(globs)
    if first is None:
        return None
    path = posixpath.join(posixpath.dirname(first), MANIFEST)  # local paths and URLs
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a JSON object")
    return parse_manifest(manifest, path)
