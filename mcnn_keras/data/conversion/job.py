"""The conversion job: labelled fields of view -> sharded TFRecords + manifest.

Every converter ends here (`mcnn-convert-bbbc021`: BBBC021's CSV join;
`mcnn-convert-images`: an index CSV or CellProfiler LoadData CSVs). Fields
have any number C >= 1 of channels, the same C throughout:

1. Every labelled field (the control class included, whatever --drop_dmso
   says) feeds the normalisation statistics.
2. First pass, in parallel over plates: read and check every image file
   (`images.read_raw_field`: size, bit depth, --resize), compute the per
   plate x channel illumination map (none when the fields carry
   CellProfiler illumination functions: `FieldOfView.illum_paths`) and
   percentiles (`normalization`); saved as normalization.json +
   illumination.npz.
3. Split (`splits`), then plan shards: each split's fields are shuffled and
   dealt round-robin to shards; all variants of a field go to one shard.
4. Second pass, in parallel over shards: normalise, derive the dataset A / B
   variants (`augment`), write each shard atomically (`records.write_shard`).
   Shards that already exist are skipped, so re-running resumes; a worker
   that dies stops the job naming its plate or shard (`pool`).
5. manifest.json (atomic) beside the shards: counts per class / split /
   shard, `classes` (names in label order) and `num_classes`, where they
   came from, `channels` (the C names in order), `image_size` = [`height`,
   `width`] of the records, what --resize did, statistics, flags.

With --fold all, each fold goes to `<output_dir>/fold-NN/` (own shards and
manifest; statistics shared at the top, which gets an index manifest.json
with the same classes, channels and size).

Usage:

    source = Source("images", class_names=("a", "b"), classes_from="--class_names",
                    channels=("dna", "tubulin", "actin"))
    manifest = convert_fields(labelled_fields, options, source)
"""

import dataclasses
import glob
import hashlib
import json
import math
import os

import numpy as np

from mcnn_keras.io import atomic
from mcnn_keras.data import classes
from mcnn_keras.data import dihedral
from mcnn_keras.data.manifest import MANIFEST  # what mcnn-train reads back
from mcnn_keras.io import records
from mcnn_keras.data.conversion import augment, images, normalization, splits
from mcnn_keras.data.conversion.pool import WorkerPool, run_jobs

PLAN_FILE = "conversion_plan.json"


@dataclasses.dataclass(frozen=True)
class Source:
    """Where the fields came from, as far as the job and its manifest care."""
    kind: str                    # "bbbc021" or "images": the manifest's format name
    class_names: tuple           # label order, before --drop_dmso
    classes_from: str            # how the class names were chosen
    # Names of the model's C input channels, or a function count -> names
    # when C depends on the files (one multi-channel file column).
    channels: object
    channel_labels: tuple = ()   # longer names for the manifest ('' = channels)
    control: str = classes.DMSO  # no loco fold; dropped by --drop_dmso
    unlabelled_rows: int = 0     # rows counted and skipped: no class


def output_size(o):
    if o.dataset == "B":
        side = augment.crop_size(o.height, o.width)
        return side, side
    return o.height, o.width


def variants_per_field(o, is_train):
    augmented = is_train or o.augment_val
    if o.dataset == "A" and augmented and o.augment_mode == "write":
        return dihedral.num_variants(o.height, o.width)
    if o.dataset == "B" and augmented:
        return 2 * len(augment.rotation_angles(o.rotation_step))
    return 1


def field_images(raw, stats, full_map, o, is_train):
    """The uint8 images written for one raw field (identity first)."""
    image = normalization.normalize(raw, stats, full_map)
    count = variants_per_field(o, is_train)
    if o.dataset == "B":
        crops = (augment.rotated_crops(image, o.rotation_step) if count > 1
                 else [augment.rotate_crop(image, 0)])
        return [normalization.to_uint8(c) for c in crops]
    image = normalization.to_uint8(image)
    return dihedral.all_variants_numpy(image) if count > 1 else [image]


plate_name = normalization.plate_label


def _same_kind(field, raw, first, plate):
    """ImageError unless `raw` has the bit depth and channel count of `first`
    ((dtype, channels, field): the plate's first field)."""
    dtype, channels, other = first
    if raw.dtype != dtype:  # one plate's statistics need one scale
        raise images.ImageError(
            f"{field.where()}: {field.paths[0]}: {raw.dtype} pixels, but "
            f"{other.paths[0]} on {plate_name(plate)} has {dtype} (one bit depth per plate)")
    if raw.shape[-1] != channels:
        raise images.ImageError(
            f"{field.where()}: {field.paths[0]}: {raw.shape[-1]} channels, but "
            f"{other.paths[0]} on {plate_name(plate)} has {channels} (one channel count "
            "per conversion; --channel_order picks them)")


# --- worker jobs (top-level so that spawned processes can run them) ---------

def plate_job(args):
    """First pass over one plate -> (plate, PlateStats or None, skipped, sizes, fields)."""
    plate, fields, o = args
    accumulator = normalization.StatisticsAccumulator(
        o.height, o.width, o.illum_sigma or None,
        estimate_map=not any(f.illum_paths for f in fields))
    skipped, sizes, first = [], {}, None
    for field in fields:
        try:
            raw, native = images.read_raw_field_and_size(field, o.height, o.width, o.resize)
            first = first or (raw.dtype, raw.shape[-1], field)
            _same_kind(field, raw, first, plate)
            accumulator.add(raw)
            size = f"{native[0]}x{native[1]}"
            sizes[size] = sizes.get(size, 0) + 1
        except images.ImageError as e:
            if o.on_bad_file == "error":
                raise
            skipped.append({"row": field.row, "error": str(e),
                            **({"source": field.source} if field.source else {})})
    stats = accumulator.finish(plate_name(plate)) if accumulator.samples else None
    return plate, stats, skipped, sizes, len(fields)


def shard_job(args):
    """Second pass: writes one shard -> (path, fields written)."""
    path, fields, stats_by_plate, is_train, o = args
    maps = {}

    def serialized():
        for field in fields:
            stats = stats_by_plate[field.plate]
            if field.plate not in maps:
                maps[field.plate] = stats.full_map()
            raw = images.read_raw_field(field, o.height, o.width, o.resize)
            for image in field_images(raw, stats, maps[field.plate], o, is_train):
                yield records.encode_example(image, field.label, field.metadata())
    records.write_shard(path, serialized())
    return path, len(fields)


# --- the job ----------------------------------------------------------------

def _plan_fingerprint(o, fields):
    options = {k: v for k, v in dataclasses.asdict(o).items() if k != "workers"}
    digest = hashlib.sha256()
    for field in fields:
        digest.update(repr((field.row, field.paths, field.class_name)).encode())
    return {"options": options, "fields": digest.hexdigest()}


def _check_plan(output_dir, plan):
    path = os.path.join(output_dir, PLAN_FILE)
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        started = glob.glob(os.path.join(output_dir, "**", "*.tfrecord"), recursive=True)
        if previous != plan and not started:
            atomic.write_json_atomic(path, plan)  # nothing written yet: start afresh
            return False
        if previous != plan:
            changed = sorted(k for k in plan["options"]
                             if previous.get("options", {}).get(k) != plan["options"][k])
            what = f"options {changed}" if changed else "the input files"
            raise ValueError(f"{output_dir} holds a conversion with different {what}; "
                             "use another --output_dir or delete it")
        return True
    atomic.write_json_atomic(path, plan)
    return False


def compute_statistics(fields, o, progress=True, pool=None):
    """First pass; returns ({plate: PlateStats}, skipped list, {"HxW": fields})."""
    by_plate = {}
    for field in fields:
        by_plate.setdefault(field.plate, []).append(field)
    jobs = [(plate, plate_fields, o) for plate, plate_fields in sorted(by_plate.items())]
    stats, skipped, sizes = {}, [], {}
    for plate, plate_stats, plate_skipped, plate_sizes, _ in run_jobs(
            plate_job, jobs, pool, progress, len(fields), "statistics", [],
            [plate_name(job[0]) for job in jobs]):
        if plate_stats is not None:
            stats[plate] = plate_stats
        skipped.extend(plate_skipped)
        for size, count in plate_sizes.items():
            sizes[size] = sizes.get(size, 0) + count
    counts = sorted((plate, s.lowres_map.shape[-1]) for plate, s in stats.items())
    for plate, count in counts[1:]:
        if count != counts[0][1]:
            raise ValueError(f"{plate_name(plate)} has {count} channels, but "
                             f"{plate_name(counts[0][0])} has {counts[0][1]} (one channel "
                             "count per conversion; --channel_order picks them)")
    return stats, sorted(skipped, key=lambda s: (s.get("source", ""), s["row"])), dict(
        sorted(sizes.items()))


def plan_shards(train, val, o, fold_dir):
    """[(path, fields, is_train)]: shuffled fields dealt round-robin to shards."""
    rng = np.random.default_rng(o.seed + 1)
    plan = []
    num_val = 0
    if val:
        num_val = max(1, min(len(val), math.ceil(o.num_shards * len(val) / max(1, len(train)))))
    for prefix, fields, count in (("train", train, min(o.num_shards, len(train))),
                                  ("val", val, num_val)):
        order = [fields[i] for i in rng.permutation(len(fields))]
        for index in range(count):
            path = os.path.join(fold_dir, records.shard_name(prefix, index, count))
            plan.append((path, order[index::count], prefix == "train"))
    return plan


def _counts(entries, class_names, records_per_field):
    per_class = dict.fromkeys(class_names, 0)
    for field in entries:
        per_class[field.class_name] += 1
    return {"fields": len(entries), "records": len(entries) * records_per_field,
            "per_class": per_class}


def convert_fields(fields, o, source, flags=None, progress=True):
    """Converts labelled `fields` (sorted by key) with options `o` (a converter's
    options: `SharedOptions` plus `output_dir`); returns the manifest dict
    (the index manifest if several folds)."""
    if o.workers == 1:
        return _convert(fields, o, source, flags, progress, None)
    pool = WorkerPool(o.workers)  # one for both passes
    try:
        return _convert(fields, o, source, flags, progress, pool)
    finally:
        pool.close()


def _channel_names(source, stats):
    """The C names of the channels the statistics have (C from the fields)."""
    counts = {s.lowres_map.shape[-1] for s in stats.values()}
    if not counts:
        return tuple(source.channels) if not callable(source.channels) else ()
    count = counts.pop()
    names = source.channels(count) if callable(source.channels) else tuple(source.channels)
    if len(names) != count:
        raise ValueError(f"the fields have {count} channels, but the channel names are "
                         f"{list(names)} ({len(names)})")
    return names


def _statistics(all_fields, o, source, progress, pool):
    """Computed, or loaded when resuming -> (stats, summary)."""
    resuming = _check_plan(o.output_dir, _plan_fingerprint(o, all_fields))
    if resuming and os.path.exists(os.path.join(o.output_dir, normalization.STATS_JSON)):
        with open(os.path.join(o.output_dir, normalization.STATS_JSON)) as f:
            summary = json.load(f)
    else:
        stats, skipped, sizes = compute_statistics(all_fields, o, progress, pool)
        sigma = o.illum_sigma or normalization.default_sigma(o.height)
        cellprofiler = any(f.illum_paths for f in all_fields)
        summary = normalization.save_statistics(
            o.output_dir, stats, sigma, extra={"skipped": skipped, "input_sizes": sizes},
            channels=_channel_names(source, stats),
            illumination=normalization.CELLPROFILER if cellprofiler else "estimate")
    # What a resumed run loads too (dtypes differ from the computed ones), so
    # that its shards equal an uninterrupted run's byte for byte.
    return normalization.load_statistics(o.output_dir), summary


def _skip_key(field_or_entry):
    if isinstance(field_or_entry, dict):
        return field_or_entry.get("source", ""), field_or_entry["row"]
    return field_or_entry.source, field_or_entry.row


def _labelled(fields, o, source, skipped):
    """(class names, the fields to write, relabelled in those names' order)."""
    names = [n for n in source.class_names if not (o.drop_dmso and n == source.control)]
    bad_rows = {_skip_key(s) for s in skipped}
    index = {name: i for i, name in enumerate(names)}
    kept = [dataclasses.replace(f, label=index[f.class_name]) for f in fields
            if _skip_key(f) not in bad_rows
            and not (o.drop_dmso and f.class_name == source.control)]
    if o.split == "loco":
        for field in kept:
            if not field.compound and field.class_name != source.control:
                raise ValueError(f"{field.where() or 'a field'}: no compound, which --split="
                                 "loco needs (a compound column, or --metadata_columns)")
    return names, kept


def _convert(all_fields, o, source, flags, progress, pool):
    os.makedirs(o.output_dir, exist_ok=True)
    atomic.remove_temporaries(o.output_dir)  # left by a killed run
    stats, summary = _statistics(all_fields, o, source, progress, pool)
    skipped = summary["skipped"]
    class_names, fields = _labelled(all_fields, o, source, skipped)
    fold_names = splits.fold_names(fields, o.split, source.control)
    folds = splits.resolve_folds(fields, o.split, o.fold, source.control)

    fold_plans, jobs = [], []
    for fold in folds:
        fold_dir = o.output_dir if len(folds) == 1 else os.path.join(o.output_dir, f"fold-{fold:02d}")
        os.makedirs(fold_dir, exist_ok=True)
        atomic.remove_temporaries(fold_dir)
        train, val = splits.split(fields, o.split, fold, o.val_fraction, o.seed, source.control)
        shards = plan_shards(train, val, o, fold_dir)
        fold_plans.append((fold, fold_dir, train, val, shards))
        for path, shard_fields, is_train in shards:
            if not os.path.exists(path):
                plates = {f.plate for f in shard_fields}
                jobs.append((path, shard_fields, {p: stats[p] for p in plates}, is_train, o))
    total = sum(len(job[1]) for job in jobs)
    dirs = [plan[1] for plan in fold_plans]
    for _ in run_jobs(shard_job, jobs, pool, progress, total, "shards", dirs,
                      [f"shard {job[0]}" for job in jobs]):
        pass

    common = {
        "flags": flags if flags is not None else dataclasses.asdict(o),
        "classes": class_names, "num_classes": len(class_names),
        "classes_from": source.classes_from,
        "channels": list(summary["channels"] if not source.channel_labels
                         else source.channel_labels),
        "image_size": list(output_size(o)),
        "height": output_size(o)[0], "width": output_size(o)[1],
        "resize": _resize_record(o, summary),
    }
    manifests = [_fold_manifest(o, source, common, summary, fold_names, *plan)
                 for plan in fold_plans]
    if len(manifests) == 1:
        return manifests[0]
    index = {"format": f"mcnn-keras/{source.kind}-folds/1", **common, "split": o.split,
             "folds": [{"fold": fold, "fold_name": fold_names[fold],
                        "dir": os.path.basename(fold_dir)}
                       for fold, fold_dir, *_ in fold_plans],
             "counts": {"per_class": manifests[0]["counts"]["per_class"],
                        "unlabelled_rows": source.unlabelled_rows,
                        "skipped_fields": len(skipped)},
             "normalization": summary, "skipped": skipped}
    atomic.write_json_atomic(os.path.join(o.output_dir, MANIFEST), index)
    return index


def _resize_record(o, summary):
    """What --resize did: the files' own sizes and how many fields were fitted."""
    sizes = summary.get("input_sizes", {})
    target = f"{o.height}x{o.width}"
    return {"mode": o.resize, "size": [o.height, o.width], "input_sizes": sizes,
            "fields_resized": sum(n for size, n in sizes.items() if size != target)}


def _fold_manifest(o, source, common, summary, fold_names, fold, fold_dir, train, val, shards):
    class_names = common["classes"]
    per_field = {"train": variants_per_field(o, True), "val": variants_per_field(o, False)}
    manifest = {
        "format": f"mcnn-keras/{source.kind}-tfrecord/1", **common,
        "split": {"name": o.split, "fold": fold, "fold_name": fold_names[fold],
                  "num_folds": len(fold_names), "val_fraction": o.val_fraction},
        "dataset": o.dataset, "augment_mode": o.augment_mode,
        "records_per_field": per_field,
        "counts": {
            "per_class": _counts(train + val, class_names, 1)["per_class"],
            "per_split": {"train": _counts(train, class_names, per_field["train"]),
                          "val": _counts(val, class_names, per_field["val"])},
            "per_shard": {os.path.basename(path): _counts(
                shard_fields, class_names, per_field["train" if is_train else "val"])
                for path, shard_fields, is_train in shards},
            "unlabelled_rows": source.unlabelled_rows,
            "skipped_fields": len(summary["skipped"]),
        },
        "files": {"train": [os.path.basename(p) for p, _, t in shards if t],
                  "val": [os.path.basename(p) for p, _, t in shards if not t]},
        "normalization": dict(summary, maps_file=os.path.relpath(
            os.path.join(o.output_dir, normalization.MAPS_NPZ), fold_dir)),
        "skipped": summary["skipped"],
    }
    atomic.write_json_atomic(os.path.join(fold_dir, MANIFEST), manifest)
    return manifest
