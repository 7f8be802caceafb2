"""Exports a trained M-CNN for serving, with what inference on raw data needs.

An export directory holds:

- the SavedModel: `serving_default` takes uint8 `images` [N, H, W, 3] (the
  raw pixels, as in the TFRecords; /255 and the 724 -> 768 zero padding are
  inside the model) and returns float32 `probabilities` [N, C], int64
  `class_ids` [N], string `class_names` [N]; `features` takes the same and
  returns float32 `features` [N, 512] (the ReLU output of the first dense
  layer, `ip0`), `probabilities` and `class_ids`;
- `mcnn_export.json` (format 2; format 1 is still read): class names, input
  size, the padded size the network runs at, channel order, pixel scaling,
  and the normalisation the training data got;
- `preprocessing/`: the converter's `normalization.json` + `illumination.npz`
  (per plate x channel illumination maps and intensity percentiles,
  bbbc021/preprocess.py), copied from beside the training shards when they
  came from the converter; else `"normalization": null` and the reason (e.g.
  synthetic shards, whose pixels had no correction);
- with `onnx=True`, `model.onnx` (export_onnx.py, the `onnx` extra).

Normalisation of raw fields at inference (`mcnn-predict --normalization`, in
the JSON as "normalization_modes"): `training` applies the saved statistics
of the field's plate (a plate that was not in training is an error naming
it); `plate` computes the same statistics (illumination map + percentiles) on
the fly from all input fields of each plate, the converter's first pass;
`image` uses one field's own percentiles with a flat illumination map.
Inputs that are already uint8 (8-bit PNGs, TFRecords) get none.

The export is built in a temporary directory and swapped in atomically, so an
existing export (its model.onnx too) survives a failed one. Only a directory
with the marker (or a run directory's `export/` from before the marker) is
ever replaced; any other existing path is refused before any work.

Usage:

    export_saved_model(model, "runs/demo/export", MOA_CLASSES,
                       train_files="data/train-*.tfrecord")   # onnx=True: + model.onnx
    info = read_export_info("runs/demo/export")   # {"height": 128, "channels": [...], ...}
    stats = load_statistics("runs/demo/export")   # {plate: PlateStats} or None
    model = load_model("runs/demo/export", dtype_policy="mixed_bfloat16")
    served = tf.saved_model.load("runs/demo/export")
    out = served.signatures["features"](images=uint8_batch)   # out["features"]: [N, 512]
"""

import json
import os
import shutil

from absl import logging

from mcnn_keras import atomic, run_dir, storage, topology
from mcnn_keras.bbbc021 import preprocess

MARKER = "mcnn_export.json"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
PREPROCESSING = "preprocessing"
SERVING, FEATURES = "serving_default", "features"
FEATURES_LAYER = "ip0"
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


def _is_legacy_run_export(path):
    """A run directory's own export/ from before the marker: ours too."""
    path = os.path.normpath(path)
    return (os.path.basename(path) == run_dir.EXPORT
            and os.path.exists(os.path.join(path, "saved_model.pb"))
            and os.path.exists(os.path.join(os.path.dirname(path), run_dir.FLAGS_JSON)))


def check_export_dir(path):
    """Raises ValueError unless an export may be written to `path`: a missing
    path, an empty directory or an export this project wrote (`MARKER`)."""
    if storage.is_remote(path) or not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        raise ValueError(f"{path} exists and is not a directory: not replacing it with "
                         f"an export")
    if (os.path.exists(os.path.join(path, MARKER)) or not os.listdir(path)
            or _is_legacy_run_export(path)):
        return
    raise ValueError(f"{path} exists and is not an export of mcnn-keras (it has no "
                     f"{MARKER}): not replacing it; move it away or export elsewhere")


# --- The training data's normalisation -------------------------------------------

def _read_json(path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _statistics_dir(shard_dir):
    """Where the converter's normalization.json for shards in `shard_dir` is:
    beside them, or (one fold of several) where their manifest's maps_file points."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if tf.io.gfile.exists(os.path.join(shard_dir, preprocess.STATS_JSON)):
        return shard_dir
    manifest = os.path.join(shard_dir, "manifest.json")
    if tf.io.gfile.exists(manifest):
        maps_file = (_read_json(manifest).get("normalization") or {}).get("maps_file")
        if maps_file:
            directory = os.path.normpath(os.path.dirname(os.path.join(shard_dir, maps_file)))
            if tf.io.gfile.exists(os.path.join(directory, preprocess.STATS_JSON)):
                return directory
    return None


def find_training_statistics(train_files):
    """Where the training shards `train_files` (comma-separated globs or a list)
    came from: (their directories, the directory holding the converter's
    normalization.json or None, why there is none or None)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mcnn_keras import dataset  # pylint: disable=import-outside-toplevel
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
        return shard_dirs, None, (f"no {preprocess.STATS_JSON} beside the training shards "
                                  f"{train_files!r} (data not written by the converter)")
    if len(found) > 1:
        return shard_dirs, None, (f"the training shards come from several conversions "
                                  f"({', '.join(sorted(found))}): their statistics are "
                                  f"not merged")
    return shard_dirs, found.pop(), None


def _copy_statistics(source, target):
    """Copies normalization.json + its maps file from `source` into `target`;
    returns the "normalization" record of the export's JSON (checked loadable)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    summary = _read_json(os.path.join(source, preprocess.STATS_JSON))
    files = [preprocess.STATS_JSON, summary.get("maps_file", preprocess.MAPS_NPZ)]
    os.makedirs(target)
    for name in files:
        tf.io.gfile.copy(os.path.join(source, name), os.path.join(target, name))
    plates = sorted(preprocess.load_statistics(target))  # what inference will load
    return {"method": "illumination map per plate x channel (blurred mean image, floored), "
                      "then the 0.1st..99.9th percentiles to 0..255 (bbbc021/preprocess.py)",
            "directory": PREPROCESSING, "files": files,
            "source": storage.absolute(source),
            "plates": plates, "sigma": summary.get("sigma"),
            "channels": summary.get("channels")}


def _channels(statistics_dir, shard_dirs):
    """The channel order: the converter's statistics or manifest, else the default."""
    candidates = ([os.path.join(statistics_dir, preprocess.STATS_JSON)] if statistics_dir
                  else []) + [os.path.join(d, "manifest.json") for d in shard_dirs]
    for path in candidates:
        try:
            channels = _read_json(path).get("channels")
        except Exception:  # pylint: disable=broad-except  # missing or not JSON: next one
            continue
        if isinstance(channels, list) and len(channels) == 3:
            return [str(c) for c in channels], path
    return list(DEFAULT_CHANNELS), DEFAULT_CHANNELS_FROM


# --- Writing ---------------------------------------------------------------------

def _float32_copy(model):
    """A plain float32 copy of `model` outside any distribution strategy.

    Serving wants float32 math on any CPU; and a fresh model keeps the export
    free of distributed-variable wrappers. The weights are float32 in every
    policy, so the copy is exact.
    """
    from mcnn_keras.model import build_model  # pylint: disable=import-outside-toplevel
    _, height, width, _ = model.input_shape
    copy = build_model(height, width, model.output_shape[-1], dtype_policy="float32")
    copy.set_weights(model.get_weights())
    return copy


def features_model(model):
    """`model` with two outputs: {"features": ip0's ReLU [N, 512], "logits": [N, C]}
    (the same layers and weights; features in the model's compute dtype)."""
    import keras  # pylint: disable=import-outside-toplevel
    return keras.Model(model.input, {"features": model.get_layer(FEATURES_LAYER).output,
                                      "logits": model.outputs[0]}, name=f"{model.name}_features")


def serving_functions(model, class_names):
    """{signature name: function of uint8 images -> dict of outputs} of the export."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    names = tf.constant(list(class_names))
    both = features_model(model)

    def outputs(images):
        out = both(images, training=False)
        probabilities = tf.nn.softmax(tf.cast(out["logits"], tf.float32), axis=-1)
        return tf.cast(out["features"], tf.float32), probabilities, tf.argmax(probabilities, -1)

    def serve(images):
        _, probabilities, class_ids = outputs(images)
        return {"probabilities": probabilities, "class_ids": class_ids,
                "class_names": tf.gather(names, class_ids)}

    def features(images):
        features_, probabilities, class_ids = outputs(images)
        return {"features": features_, "probabilities": probabilities, "class_ids": class_ids}
    return {SERVING: serve, FEATURES: features}


def build_info(height, width, class_names, channels=DEFAULT_CHANNELS,
               channels_from=DEFAULT_CHANNELS_FROM, normalization=None,
               normalization_missing=None):
    """The `MARKER` dict (format 2) of an export of a height x width model."""
    images = f"uint8 [N, {height}, {width}, 3]"
    head = {"probabilities": "float32 [N, num_classes]", "class_ids": "int64 [N]"}
    return {
        "format_version": FORMAT_VERSION, "class_names": list(class_names),
        "num_classes": len(class_names), "height": height, "width": width,
        "input": {"name": "images", "dtype": "uint8", "shape": [None, height, width, 3],
                  "scaling": "x / 255 inside the model (layer 'scale')"},
        "padding": {"padded_height": topology.padded_size(height),
                    "padded_width": topology.padded_size(width),
                    "padded_sizes": {str(k): v for k, v in topology.PADDED_SIZES.items()},
                    "rule": "a side listed in padded_sizes is zero-padded (centred) to that "
                            "size inside the model; any other side must be a multiple of "
                            f"{topology.SIZE_MULTIPLE}"},
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


def _saved_module(model, class_names):
    """A tf.Module holding the model's variables once and the two signatures.

    Not keras.export.ExportArchive: on TensorFlow 2.21 it saves every weight
    twice (as the Keras variable and as its tf.Variable), 333 MB instead of
    170 MB at 1024 x 1280.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    _, height, width, _ = model.input_shape
    spec = tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")
    module = tf.Module()
    # The tf.Variables under the Keras ones, each once (names: "<layer>/kernel").
    module.model_variables = [w.value for w in model.weights]
    for name, function in serving_functions(model, class_names).items():
        setattr(module, name, tf.function(function, input_signature=[spec]))
    return module


def export_saved_model(model, path, class_names, train_files=None, onnx=False):
    """Writes the export of `model` to `path` (atomically): SavedModel, `MARKER`,
    the training data's statistics (found from `train_files`, the run's
    comma-separated training globs) and with `onnx` also model.onnx. Refuses a
    `path` that is not ours (`check_export_dir`). Returns the info written."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    check_export_dir(path)
    if onnx:
        from mcnn_keras import export_onnx  # pylint: disable=import-outside-toplevel
        export_onnx.require_onnx()
    serving_model = _float32_copy(model)
    _, height, width, _ = serving_model.input_shape
    if len(class_names) != serving_model.output_shape[-1]:
        raise ValueError(f"{len(class_names)} class names for a model with "
                         f"{serving_model.output_shape[-1]} outputs")
    shard_dirs, source, why_not = find_training_statistics(train_files)

    module = _saved_module(serving_model, class_names)
    with atomic.atomic_directory(path) as tmp:
        tf.saved_model.save(module, tmp, signatures={
            name: getattr(module, name) for name in (SERVING, FEATURES)})
        normalization = None
        if source:
            try:
                normalization = _copy_statistics(source, os.path.join(tmp, PREPROCESSING))
            except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
                # Not fatal at the end of a training run: recorded, and logged.
                shutil.rmtree(os.path.join(tmp, PREPROCESSING), ignore_errors=True)
                why_not = f"{source}: unreadable statistics ({str(e).splitlines()[0]})"
        if why_not:
            logging.warning("export %s: no normalisation recorded: %s", path, why_not)
        info = build_info(height, width, class_names, *_channels(source, shard_dirs),
                          normalization, why_not)
        if onnx:
            info["onnx"] = export_onnx.write_onnx(
                serving_model, os.path.join(tmp, export_onnx.ONNX_FILE), class_names,
                channels=info["channels"])
        atomic.write_json_atomic(os.path.join(tmp, MARKER), info)
    return info


# --- Reading ---------------------------------------------------------------------

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
    return _upgrade_v1(info) if info["format_version"] == 1 else info


def load_statistics(path):
    """{plate: PlateStats} the training data was normalised with, from the
    export at `path` (its preprocessing/), or None if it records none."""
    if read_export_info(path)["normalization"] is None:
        return None
    directory = os.path.join(os.fspath(path), PREPROCESSING)
    try:
        return preprocess.load_statistics(directory)
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
    from mcnn_keras.model import build_model  # pylint: disable=import-outside-toplevel
    info = read_export_info(path)
    model = build_model(info["height"], info["width"], info["num_classes"],
                        dtype_policy=dtype_policy)
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
