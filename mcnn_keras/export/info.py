"""An export's description, read back: `mcnn_export.json`, its statistics, its model.

`mcnn_export.json` (format 2; format 1 is upgraded when read) holds the class
names, input size, padded size, channel order, pixel scaling and the
normalisation the training data got; `preprocessing/` the converter's
statistics. Everything that serves an export (`mcnn-predict`, `mcnn-evaluate
--saved_model`, ONNX) reads it here.

Usage:

    info = read_export_info("runs/demo/export")   # {"height": 128, "channels": [...], ...}
    stats = load_statistics("runs/demo/export")   # {plate: PlateStats} or None
    model = load_model("runs/demo/export", dtype_policy="mixed_bfloat16")
"""

import json
import os

from mcnn_keras.core import image_size
from mcnn_keras.data.conversion import normalization as conversion_normalization
from mcnn_keras.export.signatures import FEATURES, FEATURES_LAYER, SERVING
from mcnn_keras.model import topology
from mcnn_keras.io import storage


MARKER = "mcnn_export.json"


FORMAT_VERSION = 2


READABLE_VERSIONS = (1, 2)


PREPROCESSING = "preprocessing"


# BBBC021's order (w1, w2, w4), also the synthetic data's; used when the
# training data does not say.
DEFAULT_CHANNELS = ("DAPI", "Tubulin", "Actin")


DEFAULT_CHANNELS_FROM = "default (BBBC021 order)"


NORMALIZATION_MODES = {
    "training": "the saved statistics of the field's plate (preprocessing/); a plate "
                "without them is an error",
    "plate": "illumination map and percentiles computed from all input fields of the plate",
    "image": "one field's own percentiles, flat illumination",
}


def _upgrade_v1(info):
    """A version-1 marker in the shape of version 2 (what v1 did not record: defaults)."""
    v2 = build_info(info["height"], info["width"], info["class_names"],
                    channels_from="default (export format 1)",
                    normalization_missing="export format 1 records no normalisation")
    v2["signatures"].pop(FEATURES)  # v1 exports have serving_default only
    return {**v2, "format_version": 1}


def _file_system(path):
    """(exists, isdir) for `path`: os for local paths, tf.io.gfile for object
    storage (tensorflow-io's plugin loaded first, or one line why not)."""
    if not storage.is_remote(path):
        return os.path.exists, os.path.isdir
    storage.require_filesystem(path)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.io.gfile.exists, tf.io.gfile.isdir


def read_export_info(path):
    """The validated `MARKER` of the export at `path`, as a version-2 dict.

    Raises FileNotFoundError for a missing path and ValueError for anything
    that is not an export of mcnn-keras; each message is one line naming it.
    """
    path = os.fspath(path)
    marker = os.path.join(path, MARKER)
    exists, isdir = _file_system(path)
    if not exists(path):
        raise FileNotFoundError(f"{path}: no such export directory")
    if not isdir(path):
        raise ValueError(f"{path} is a file, not an export directory of mcnn-keras")
    if not exists(marker):
        raise ValueError(f"{path} is not an export of mcnn-keras (no {MARKER}; "
                         f"re-export it with mcnn-export)")
    try:
        with storage.open_file(marker) as f:
            info = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{marker}: unreadable ({str(e).splitlines()[0]})") from None
    if not isinstance(info, dict) or info.get("format_version") not in READABLE_VERSIONS:
        version = info.get("format_version") if isinstance(info, dict) else None
        raise ValueError(f"{marker}: format_version {version!r} is not one this "
                         f"mcnn-keras reads ({', '.join(map(str, READABLE_VERSIONS))})")
    for key, kind in (("class_names", list), ("num_classes", int), ("height", int),
                      ("width", int)):
        if not isinstance(info.get(key), kind):
            raise ValueError(f"{marker}: {key!r} missing or not a {kind.__name__}")
    if len(info["class_names"]) != info["num_classes"]:
        raise ValueError(f"{marker}: {len(info['class_names'])} class_names for "
                         f"num_classes {info['num_classes']}")
    if not exists(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"{path}: has {MARKER} but no saved_model.pb (incomplete export)")
    if info["format_version"] == 1:
        return _upgrade_v1(info)
    channels = info.get("channels")
    if not (isinstance(channels, list) and channels and all(isinstance(c, str) for c in channels)):
        raise ValueError(f"{marker}: 'channels' missing or not a list of channel names")
    return info


def export_channels(info):
    """The number of channels (stains) the export's `serving_default` takes."""
    return len(info["channels"])


def load_statistics(path):
    """{plate: PlateStats} the training data was normalised with, from the
    export at `path` (its preprocessing/), or None if it records none."""
    if read_export_info(path)["normalization"] is None:
        return None
    directory = os.path.join(os.fspath(path), PREPROCESSING)
    try:
        return conversion_normalization.load_statistics(directory)
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{directory}: unreadable normalisation statistics "
                         f"({str(e).splitlines()[0]})") from None


def load_model(path, dtype_policy="float32"):
    """The exported network as a Keras model (logits out) under `dtype_policy`,
    e.g. "mixed_bfloat16" for faster prediction.

    Rebuilt with `build_model` and given the SavedModel's own variables (matched
    by name and shape), so an export needs no second copy of its weights.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mcnn_keras.model.network import build_model  # pylint: disable=import-outside-toplevel
    info = read_export_info(path)
    model = build_model(info["height"], info["width"], export_channels(info),
                        info["num_classes"], dtype_policy=dtype_policy)
    try:
        loaded = tf.saved_model.load(path)
        # Exports before format 2 were written by keras.export.ExportArchive.
        saved = getattr(loaded, "model_variables", None) or loaded.variables
        saved = {v.name.split(":")[0]: v for v in saved}
    except (OSError, KeyError, ValueError, TypeError, AttributeError, tf.errors.OpError) as e:
        raise ValueError(f"{path}: unreadable SavedModel ({str(e).splitlines()[0]})") from None
    if len(saved) != len(model.weights):
        raise ValueError(f"{path}: {len(saved)} saved variables, the model has "
                         f"{len(model.weights)}")
    for weight in model.weights:
        variable = saved.get(weight.path)
        if variable is None or tuple(variable.shape) != tuple(weight.shape):
            raise ValueError(f"{path}: no saved variable {weight.path} of shape "
                             f"{tuple(weight.shape)}")
        weight.assign(variable)
    return model


def default_channels(count):
    """Channel names when the training data recorded none: BBBC021's three, else
    c0, c1, ... (the records' order)."""
    return DEFAULT_CHANNELS if count == 3 else tuple(f"c{i}" for i in range(count))


def build_info(height, width, class_names, channels=DEFAULT_CHANNELS,
               channels_from=DEFAULT_CHANNELS_FROM, normalization=None,
               normalization_missing=None):
    """The `MARKER` dict (format 2) of an export of a height x width x
    len(channels) model."""
    count = len(channels)
    images = f"uint8 [N, {height}, {width}, {count}]"
    head = {"probabilities": "float32 [N, num_classes]", "class_ids": "int64 [N]"}
    return {
        "format_version": FORMAT_VERSION, "class_names": list(class_names),
        "num_classes": len(class_names), "height": height, "width": width,
        "input": {"name": "images", "dtype": "uint8", "shape": [None, height, width, count],
                  "scaling": "x / 255 inside the model (layer 'scale')"},
        "padding": {"padded_height": image_size.padded_size(height),
                    "padded_width": image_size.padded_size(width),
                    "padded_sizes": {str(k): v for k, v in image_size.PADDED_SIZES.items()},
                    "rule": "a side listed in padded_sizes is zero-padded (centred) to that "
                            "size inside the model; any other side must be a multiple of "
                            f"{image_size.SIZE_MULTIPLE}"},
        "channels": list(channels), "channels_from": channels_from,
        "normalization": normalization, "normalization_missing": normalization_missing,
        "normalization_modes": NORMALIZATION_MODES,
        "signatures": {
            SERVING: {"inputs": {"images": images},
                      "outputs": {**head, "class_names": "string [N]"}},
            FEATURES: {"inputs": {"images": images},
                       "outputs": {**head, "features": f"float32 [N, {topology.DENSE_UNITS}] "
                                                       f"(ReLU of layer {FEATURES_LAYER})"}}},
        "feature_dim": topology.DENSE_UNITS, "onnx": None,
    }
