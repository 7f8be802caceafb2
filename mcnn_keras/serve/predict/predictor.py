"""Classifies fields of view with an exported M-CNN: `mcnn-predict`'s library.

Inputs (`inputs`): raw fields (8/16-bit channel images) listed by a
BBBC021 image table or an index CSV, normalised as in training
(`normalize`); 8-bit RGB images by glob (already normalised); or
TFRecord shards of the project's schema. Fields are read and normalised by a
few threads while the model runs on the previous batch, at most a few batches
ahead (a 1024 x 1280 field is 7.5 MB as uint16), and each batch's rows go
straight to the output CSV (and the Parquet features table), both written
under temporary names and put in place only when the run succeeds.

Usage:

    result = predict(PredictOptions(saved_model="runs/x/export",
                                    inputs="new/BBBC021_v1_image.csv",
                                    output_csv="new/predictions.csv"))
    result.summary          # {"fields": 240, "skipped": 0, "fields_per_s": 3.1, "top1": ...}
    result.probabilities    # (fields, classes), in output-CSV order
"""

import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import logging
import os
import sys
import time

import numpy as np
import tqdm

from mcnn_keras.io import atomic
from mcnn_keras.io import features_table
from mcnn_keras.io import storage
from mcnn_keras.io.output_dirs import check_output_file
from mcnn_keras.serve import treatments
from mcnn_keras.serve.predict import inputs
from mcnn_keras.serve.predict.normalize import FieldNormalizer
from mcnn_keras.serve.predict.options import check_options
from mcnn_keras.export import signatures as export_signatures
from mcnn_keras.export import info as export_info

_LOG = logging.getLogger(__name__)
TOP_K = 5
METADATA_COLUMNS = ("plate", "well", "site", "compound", "concentration", "replicate")
CSV_COLUMNS = (("input_files", "row") + METADATA_COLUMNS + ("true_class", "predicted_class")
               + tuple(f"top{k}_{what}" for k in range(1, TOP_K + 1)
                       for what in ("class", "prob")) + ("normalization",))


@dataclasses.dataclass
class PredictResult:
    summary: dict               # what the binary prints as its JSON line
    probabilities: np.ndarray   # (fields, classes) in output order
    fields: list                # the predicted InputFields, in output order
    skipped: list               # [{"where": ..., "error": ...}] of bad fields


class ExportedModel:
    """An export ready to classify uint8 batches: (probabilities, features or None)."""

    def __init__(self, path, dtype="float32", with_features=False):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        self.info = export_info.read_export_info(path)
        self.class_names = list(self.info["class_names"])
        self.height, self.width = self.info["height"], self.info["width"]
        self.channels = export_info.export_channels(self.info)
        self.path = path
        self.with_features = with_features
        if with_features and export_signatures.FEATURES not in self.info["signatures"]:
            raise ValueError(f"{path}: export format {self.info['format_version']} has no "
                             f"features signature (--features_out): re-export it with "
                             f"mcnn-export")
        if dtype == "float32":
            name = export_signatures.FEATURES if with_features else export_signatures.SERVING
            try:
                signature = tf.saved_model.load(path).signatures[name]
            except (OSError, KeyError, ValueError, tf.errors.OpError) as e:
                raise ValueError(f"{path}: not a loadable SavedModel of mcnn-export "
                                 f"({str(e).splitlines()[0]})") from None
            self._run = lambda images: signature(images=images)
        else:
            model = export_signatures.features_model(export_info.load_model(path, dtype_policy=dtype))
            spec = tf.TensorSpec([None, self.height, self.width, self.channels], tf.uint8)

            @tf.function(input_signature=[spec])
            def run(images):
                out = model(images, training=False)
                return {"probabilities": tf.nn.softmax(tf.cast(out["logits"], tf.float32), -1),
                        "features": tf.cast(out["features"], tf.float32)}
            self._run = run

    def check_channels(self, count, what):
        """ValueError naming `what` unless it has the export's number of channels."""
        if count != self.channels:
            raise ValueError(f"{what}: {count} channel(s), but the export {self.path} was "
                             f"trained on {self.channels} ({', '.join(self.info['channels'])})")

    def __call__(self, images):
        out = self._run(images)
        features = out["features"].numpy() if self.with_features else None
        return out["probabilities"].numpy(), features


# --- reading ahead ------------------------------------------------------------------

def _capture(function, item):
    try:
        return function(item)
    except (ValueError, OSError) as e:  # a bad field, reported by the caller
        return e


def ordered_map(function, items, threads, ahead):
    """Yields (item, function(item) or its ValueError/OSError) in order, computed
    by `threads` threads at most `ahead` items in advance."""
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        pending = collections.deque()
        try:
            for item in items:
                pending.append((item, pool.submit(_capture, function, item)))
                if len(pending) >= ahead:
                    item, future = pending.popleft()
                    yield item, future.result()
            while pending:
                item, future = pending.popleft()
                yield item, future.result()
        finally:  # the consumer stopped early: do not read what nobody will use
            for _, future in pending:
                future.cancel()


def _message(field, error):
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if text.startswith(field.where) else f"{field.where}: {text}"


class _Skipper:
    """Bad fields: an error (without --skip_bad) or counted and listed."""

    def __init__(self, skip_bad):
        self.skip_bad, self.skipped = skip_bad, []

    def __call__(self, field, error):
        message = _message(field, error)
        if not self.skip_bad:
            raise ValueError(message)
        _LOG.warning("skipped %s", message)
        self.skipped.append({"where": field.where, "error": message})


def _field_batches(fields, load, options, skipper):
    """(fields, uint8 batch) of `fields`, loaded by `load(field)` in threads."""
    batch, images = [], []
    ahead = max(2 * options.batch_size, options.readers)
    with contextlib.closing(ordered_map(load, fields, options.readers, ahead)) as results:
        for field, image in results:
            if isinstance(image, Exception):
                skipper(field, image)
                continue
            batch.append(field)
            images.append(image)
            if len(batch) == options.batch_size:
                yield batch, np.stack(images)
                batch, images = [], []
    if batch:
        yield batch, np.stack(images)


def _record_batches(files, model, options):
    """(fields, uint8 batch) of TFRecord shards, shard by shard, through eval_dataset."""
    from mcnn_keras.data import dataset  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io import records  # pylint: disable=import-outside-toplevel
    for path in files:
        model.check_channels(records.image_shape(path)[2], f"{path}: record 0")
        ds = dataset.eval_dataset([path], model.height, model.width, options.batch_size,
                                  len(model.class_names), cycle_length=1, with_metadata=True,
                                  channels=model.channels)
        index = 0
        for images, labels, metadata in dataset.named_errors(ds, [path]):
            columns = {k: [v.decode("utf-8") for v in metadata[k].numpy()]
                       for k in records.METADATA_KEYS}
            fields = []
            for i, label in enumerate(labels.numpy()):
                meta = {k: columns[k][i] for k in records.METADATA_KEYS}
                meta["class_name"] = model.class_names[int(label)]  # the record's label rules
                fields.append(inputs.InputField((path,), f"{path}: record {index}", meta, index))
                index += 1
            yield fields, images.numpy()


def _raw_reader(normalizer, resize, model):
    """Reads a field at the size its statistics are for (`FieldNormalizer.read_size`),
    refusing one with another channel count than the export's."""
    def read(field):
        raw = inputs.read_raw(field, *normalizer.read_size, resize)
        model.check_channels(raw.shape[-1], field.where)
        return raw
    return read


def _batches(kind, files, model, options, skipper, progress):
    """(normalization used, total fields or None, iterator of (fields, uint8 batch))."""
    if kind == inputs.TFRECORDS:
        return "none", None, _record_batches(files, model, options)
    if kind == inputs.IMAGES:
        model.check_channels(3, f"{files[0]}: an RGB image")
        fields = inputs.image_fields(files)
        return "none", len(fields), _field_batches(
            fields, lambda f: inputs.read_rgb_image(f.files[0], model.height, model.width),
            options, skipper)
    fields = inputs.csv_fields(kind, files[0], options.moa_csv, options)
    mode = options.normalization or "training"
    statistics = export_info.load_statistics(options.saved_model) if mode == "training" else None
    if mode == "training" and statistics is None:
        why = model.info.get("normalization_missing") or "it records none"
        raise ValueError(f"--normalization=training: the export {options.saved_model} has no "
                         f"training normalisation statistics ({why}): use "
                         f"--normalization=plate or --normalization=image")
    sigma = (model.info.get("normalization") or {}).get("sigma")
    normalizer = FieldNormalizer(mode, model.height, model.width, statistics, sigma)
    normalizer.check_plates(fields)
    if mode == "plate":
        per_plate = collections.Counter(f.metadata.get("plate", "") for f in fields)
        read = ordered_map(_raw_reader(normalizer, options.resize, model), fields,
                           options.readers,
                           2 * options.readers)
        with contextlib.closing(read), tqdm.tqdm(
                read, total=len(fields), desc="plate statistics", unit="field",
                disable=not progress) as bar:
            fields = normalizer.add_plate_statistics(bar, per_plate, skipper)
    read = _raw_reader(normalizer, options.resize, model)
    return mode, len(fields), _field_batches(
        fields, lambda field: normalizer(field, read(field)), options, skipper)


# --- writing ------------------------------------------------------------------------

def _csv_row(field, probabilities, class_names, mode):
    order = np.argsort(-probabilities)[:TOP_K]
    top = []
    for k in order:
        top += [class_names[k], f"{probabilities[k]:.8f}"]
    top += [""] * (2 * TOP_K - len(top))
    return ([";".join(field.files), "" if field.row is None else field.row]
            + [field.metadata.get(k, "") for k in METADATA_COLUMNS]
            + [field.metadata.get("class_name", ""), class_names[order[0]]] + top + [mode])


def _features_rows(fields, probabilities, class_names):
    return [{**{k: f.metadata.get(k, "") for k in METADATA_COLUMNS},
             "class_name": f.metadata.get("class_name", ""),
             "predicted_class": class_names[int(np.argmax(p))], "source": ";".join(f.files)}
            for f, p in zip(fields, probabilities)]


def check_output_path(path, flag, input_files=()):
    """ValueError naming `--flag` unless `path` may be (re)written by a successful
    run (`output_dirs.check_output_file`, which tries a write: root passes
    os.access on a read-only mount) and is none of the inputs; then removes the
    temporaries of `path` that killed runs left."""
    if storage.is_remote(path):  # written once complete (atomic.py); the store decides
        storage.require_filesystem(path)
        return
    if os.path.exists(path) and any(os.path.samefile(path, f) for f in input_files
                                    if os.path.exists(f)):
        raise ValueError(f"--{flag}={path}: is one of the inputs")
    check_output_file(path, flag)
    atomic.remove_temporaries(os.path.dirname(os.path.abspath(path)), [os.path.basename(path)])


def _accuracies(probabilities, fields, class_names):
    """Image-level top-1/top-5 and per-treatment accuracy of the labelled fields."""
    labels = np.array([inputs.true_label(f, class_names) for f in fields], np.int64)
    known = labels >= 0
    if not known.any():
        return {}
    probabilities, labels = probabilities[known], labels[known]
    result = {"labelled_fields": int(known.sum()),
              **treatments.image_accuracy(probabilities, labels)}
    metadata = [f.metadata for f, k in zip(fields, known) if k]
    if all(m.get("compound") for m in metadata):
        per_treatment = treatments.per_treatment_accuracy(probabilities, labels, metadata,
                                                          class_names)
        result["per_treatment_accuracy"] = per_treatment["accuracy"]
        result["treatments"] = per_treatment["num_treatments"]
    return result


def predict(options):
    """Runs a prediction (see the module docstring); returns a PredictResult."""
    check_options(options)
    progress = options.progress
    kind, files = inputs.detect_kind(options.inputs)
    for path, flag in ((options.output_csv, "output_csv"), (options.features_out, "features_out")):
        if path:
            check_output_path(path, flag, files)
    if kind not in inputs.RAW_KINDS and options.normalization:
        raise ValueError(f"--normalization={options.normalization}: {kind} inputs are already "
                         f"normalised 8-bit images (it applies to raw fields listed by a CSV)")
    if kind != inputs.BBBC021_CSV and options.moa_csv:
        raise ValueError(f"--moa_csv: only for a BBBC021 image table (--inputs is {kind})")
    start = time.perf_counter()
    model = ExportedModel(options.saved_model, options.dtype, bool(options.features_out))
    load_seconds = time.perf_counter() - start

    skipper = _Skipper(options.skip_bad)
    start = time.perf_counter()  # reading (plate mode: both passes) and predicting
    mode, total, batches = _batches(kind, files, model, options, skipper, progress)
    all_probabilities, predicted = [], []
    features_out = (features_table.FeaturesWriter(
        options.features_out, extra={"saved_model": storage.absolute(options.saved_model),
                                     "layer": export_signatures.FEATURES_LAYER, "normalization": mode,
                                     "dtype": options.dtype})
        if options.features_out else contextlib.nullcontext())
    with atomic.atomic_file(options.output_csv) as tmp, open(tmp, "w", newline="") as out, \
            features_out as features_writer, contextlib.closing(batches), tqdm.tqdm(
                total=total, desc="predict", unit="field", disable=not progress) as bar:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for fields, images in batches:
            probabilities, features = model(images)
            writer.writerows(_csv_row(f, p, model.class_names, mode)
                             for f, p in zip(fields, probabilities))
            if features_writer is not None:
                features_writer.write(_features_rows(fields, probabilities, model.class_names),
                                      features)
            all_probabilities.append(probabilities)
            predicted += fields
            bar.update(len(fields))
        if not predicted:
            raise ValueError(f"--inputs={options.inputs}: no field could be predicted "
                             f"({len(skipper.skipped)} skipped)")
    seconds = time.perf_counter() - start
    probabilities = np.concatenate(all_probabilities)
    summary = {"fields": len(predicted), "skipped": len(skipper.skipped),
               "seconds": round(seconds, 3), "fields_per_s": round(len(predicted) / seconds, 3),
               "load_seconds": round(load_seconds, 3), "source": kind, "dtype": options.dtype,
               "batch_size": options.batch_size, "normalization": mode,
               "height": model.height, "width": model.width,
               "output_csv": options.output_csv}
    if kind in inputs.RAW_KINDS:  # what the model expects in its channels, in order
        summary["channels"] = model.info.get("channels")
    if options.features_out:
        summary["features_out"] = options.features_out
    summary.update(_accuracies(probabilities, predicted, model.class_names))
    if skipper.skipped:
        summary["skipped_fields"] = [s["where"] for s in skipper.skipped]
    return PredictResult(summary, probabilities, predicted, skipper.skipped)


def report(result, stream=sys.stderr):
    """The human-readable lines of a result (the JSON line is the binary's)."""
    s = result.summary
    lines = [f"predicted {s['fields']} fields ({s['skipped']} skipped) in {s['seconds']:.1f} s "
             f"({s['fields_per_s']:.2f} fields/s, {s['dtype']}, normalisation "
             f"{s['normalization']}) -> {s['output_csv']}"]
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} bad field(s):")
        lines += [f"  {entry['error']}" for entry in result.skipped]
    if "top1" in s:
        lines.append(f"image-level top-1 {s['top1']:.4f}, top-5 {s['top5']:.4f} "
                     f"({s['labelled_fields']} labelled fields)")
    if "per_treatment_accuracy" in s:
        lines.append(f"per-treatment accuracy {s['per_treatment_accuracy']:.4f} "
                     f"({s['treatments']} treatments)")
    for line in lines:
        print(line, file=stream)
