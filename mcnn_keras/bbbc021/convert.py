"""The BBBC021 conversion job: download folder -> sharded TFRecords + manifest.

1. Read and join the CSVs (`metadata`); every labelled field (DMSO included,
   whatever --drop_dmso says) feeds the normalisation statistics.
2. First pass, in parallel over plates: read and check every TIFF, compute
   the per plate x channel illumination map and percentiles (`preprocess`);
   saved as normalization.json + illumination.npz.
3. Split (`splits`), then plan shards: each split's fields are shuffled and
   dealt round-robin to shards; all variants of a field go to one shard.
4. Second pass, in parallel over shards: normalise, derive the dataset A / B
   variants (`augment`), write each shard atomically (`records.write_shard`).
   Shards that already exist are skipped, so re-running resumes. A worker
   process that dies (the out-of-memory killer) stops the job with an error
   naming the plate or shard it was converting (`_WorkerPool`), never a hang.
5. manifest.json (atomic): counts per class / split / shard, statistics, flags.

With --fold all, each fold goes to `<output_dir>/fold-NN/` (own shards and
manifest; statistics shared at the top, which gets an index manifest.json).

Usage:

    manifest = convert(ConvertOptions("BBBC021", "out", split="loco", fold="taxol"))
    manifest["counts"]["per_class"]       # {"Actin disruptors": 36, ...}
"""

import concurrent.futures
import dataclasses
import glob
import hashlib
import json
import math
import multiprocessing
import os
import signal

import numpy as np
import tqdm

from mcnn_keras import atomic, classes, dihedral, records
from mcnn_keras.bbbc021 import augment, metadata, preprocess, splits
from mcnn_keras.bbbc021.options import DATASETS, ConvertOptions, check_options  # pylint: disable=unused-import

PLAN_FILE, MANIFEST = "conversion_plan.json", "manifest.json"


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
    image = preprocess.normalize(raw, stats, full_map)
    count = variants_per_field(o, is_train)
    if o.dataset == "B":
        crops = (augment.rotated_crops(image, o.rotation_step) if count > 1
                 else [augment.rotate_crop(image, 0)])
        return [preprocess.to_uint8(c) for c in crops]
    image = preprocess.to_uint8(image)
    return dihedral.all_variants_numpy(image) if count > 1 else [image]


# --- worker jobs (top-level so that spawned processes can run them) ---------

def plate_job(args):
    """First pass over one plate -> (plate, PlateStats or None, skipped, fields read)."""
    plate, fields, o = args
    accumulator = preprocess.StatisticsAccumulator(
        o.height, o.width, o.illum_sigma or None)
    skipped = []
    for field in fields:
        try:
            accumulator.add(preprocess.read_field(field.paths, o.height, o.width))
        except preprocess.ImageError as e:
            if o.on_bad_file == "error":
                raise
            skipped.append({"row": field.row, "error": str(e)})
    stats = accumulator.finish(f"plate {plate}") if accumulator.samples else None
    return plate, stats, skipped, len(fields)


def shard_job(args):
    """Second pass: writes one shard -> (path, fields written)."""
    path, fields, stats_by_plate, is_train, o = args
    maps = {}

    def serialized():
        for field in fields:
            stats = stats_by_plate[field.plate]
            if field.plate not in maps:
                maps[field.plate] = stats.full_map()
            raw = preprocess.read_field(field.paths, o.height, o.width)
            for image in field_images(raw, stats, maps[field.plate], o, is_train):
                yield records.encode_example(image, field.label, field.metadata())
    records.write_shard(path, serialized())
    return path, len(fields)


def _run_jobs(function, jobs, pool, progress, total, desc, cleanup_dirs, names):
    """Runs jobs in `pool` (or in-process if None); yields results as they finish.

    `names` ("plate X", "shard path") say in an error which job a dead worker ran.
    """
    bar = tqdm.tqdm(total=total, desc=desc, unit="field", disable=not progress)
    try:
        results = (pool.imap_unordered(function, jobs, names) if pool and len(jobs) > 1
                   else map(function, jobs))
        for result in results:
            bar.update(result[-1])
            yield result
    except BaseException:
        if pool:  # the other workers finish their job before we clean up after them
            pool.close()
        for directory in cleanup_dirs:  # shards a stopped worker was writing
            atomic.remove_temporaries(directory)
        raise
    finally:
        bar.close()


_STARTED = None  # in a pool worker: where it says which job it starts


def _init_worker(started):
    global _STARTED  # pylint: disable=global-statement
    _STARTED = started


def _tracked(function, name, job):
    _STARTED.put((os.getpid(), name))
    return function(job)


class WorkerDied(ValueError):
    """A converter worker process died (killed, e.g. out of memory).

    A ValueError, so that the binary reports it in one line.
    """


class _WorkerPool:
    """Spawned worker processes (each imports TensorFlow once) for both passes.

    A dead worker (the OOM killer's SIGKILL) breaks a ProcessPoolExecutor
    (multiprocessing.Pool would wait forever for its job). Each job says
    which process runs it, so the error names the plate or shard that died.
    """

    def __init__(self, workers):
        context = multiprocessing.get_context("spawn")
        self._started = context.SimpleQueue()
        self._executor = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker,
            initargs=(self._started,))

    def imap_unordered(self, function, jobs, names):
        """Yields each job's result as it finishes; WorkerDied if a worker dies."""
        futures = {self._executor.submit(_tracked, function, name, job): name
                   for name, job in zip(names, jobs)}
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        except concurrent.futures.process.BrokenProcessPool:
            raise WorkerDied(self._lost_job(futures)) from None
        finally:
            for future in futures:  # after an error, queued jobs never start
                future.cancel()

    def _lost_job(self, futures):
        """What died: the job of the worker that died, by exit status."""
        # Private, but the only record of the workers' exit codes: the one
        # killed has its signal, the others the executor's SIGTERM.
        processes = dict(getattr(self._executor, "_processes", None) or {})
        self._executor.shutdown(wait=True)  # reaps every worker
        running = {}
        while not self._started.empty():
            pid, name = self._started.get()
            running[pid] = name  # a worker's last job is the one it ran
        finished = {name for future, name in futures.items()
                    if future.done() and not future.cancelled() and not future.exception()}
        running = {pid: name for pid, name in running.items() if name not in finished}
        dead = {pid: p.exitcode for pid, p in processes.items()
                if p.exitcode not in (None, 0, -signal.SIGTERM)}
        how = ", ".join(f"pid {pid}, " + (f"signal {-code}" if code < 0 else f"exit {code}")
                        for pid, code in dead.items())
        lost = [running[pid] for pid in dead if pid in running] or sorted(running.values())
        what = (f"while converting {' or '.join(lost)}" if lost else "between jobs")
        return (f"a converter worker process died{f' ({how})' if how else ''} {what}: "
                f"killed, e.g. for lack of memory (try fewer --workers)? Re-run the same "
                f"command to resume: finished shards are kept")

    def close(self):
        """Lets running jobs finish, drops queued ones, ends the processes."""
        self._executor.shutdown(wait=True, cancel_futures=True)


# --- the job ----------------------------------------------------------------

def _plan_fingerprint(o, fields):
    options = {k: v for k, v in dataclasses.asdict(o).items() if k != "workers"}
    digest = hashlib.sha256()
    for field in fields:
        digest.update(repr((field.row, field.paths, field.moa)).encode())
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
    """First pass; returns ({plate: PlateStats}, skipped list)."""
    by_plate = {}
    for field in fields:
        by_plate.setdefault(field.plate, []).append(field)
    jobs = [(plate, plate_fields, o) for plate, plate_fields in sorted(by_plate.items())]
    stats, skipped = {}, []
    for plate, plate_stats, plate_skipped, _ in _run_jobs(
            plate_job, jobs, pool, progress, len(fields), "statistics", [],
            [f"plate {job[0]}" for job in jobs]):
        if plate_stats is not None:
            stats[plate] = plate_stats
        skipped.extend(plate_skipped)
    return stats, sorted(skipped, key=lambda s: s["row"])


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
        per_class[field.moa] += 1
    return {"fields": len(entries), "records": len(entries) * records_per_field,
            "per_class": per_class}


def convert(o, flags=None, progress=True):
    """Runs the whole conversion; returns the manifest dict (index if several folds)."""
    check_options(o)
    if o.workers == 1:
        return _convert(o, flags, progress, None)
    pool = _WorkerPool(o.workers)  # one for both passes
    try:
        return _convert(o, flags, progress, pool)
    finally:
        pool.close()


def _convert(o, flags, progress, pool):
    all_fields, unlabelled = metadata.read_fields(o.bbbc021_dir)
    if not all_fields:
        raise ValueError(f"{o.bbbc021_dir}: no labelled field of view (no row of "
                         f"{metadata.IMAGE_CSV} matches {metadata.MOA_CSV})")
    os.makedirs(o.output_dir, exist_ok=True)
    atomic.remove_temporaries(o.output_dir)  # left by a killed run
    resuming = _check_plan(o.output_dir, _plan_fingerprint(o, all_fields))
    if resuming and os.path.exists(os.path.join(o.output_dir, preprocess.STATS_JSON)):
        stats = preprocess.load_statistics(o.output_dir)
        with open(os.path.join(o.output_dir, preprocess.STATS_JSON)) as f:
            summary = json.load(f)
        skipped = summary["skipped"]
    else:
        stats, skipped = compute_statistics(all_fields, o, progress, pool)
        sigma = o.illum_sigma or preprocess.default_sigma(o.height)
        summary = preprocess.save_statistics(o.output_dir, stats, sigma,
                                             extra={"skipped": skipped})
        # What a resumed run will load (dtypes differ from the computed ones),
        # so that its shards equal an uninterrupted run's byte for byte.
        stats = preprocess.load_statistics(o.output_dir)
    bad_rows = {s["row"] for s in skipped}
    fields = [f for f in all_fields if f.row not in bad_rows
              and not (o.drop_dmso and f.moa == classes.DMSO)]
    class_names = list(classes.MOA_CLASSES[:12] if o.drop_dmso else classes.MOA_CLASSES)
    fold_names = splits.fold_names(fields, o.split)
    folds = splits.resolve_folds(fields, o.split, o.fold)

    fold_plans, jobs = [], []
    for fold in folds:
        fold_dir = o.output_dir if len(folds) == 1 else os.path.join(o.output_dir, f"fold-{fold:02d}")
        os.makedirs(fold_dir, exist_ok=True)
        atomic.remove_temporaries(fold_dir)
        train, val = splits.split(fields, o.split, fold, o.val_fraction, o.seed)
        shards = plan_shards(train, val, o, fold_dir)
        fold_plans.append((fold, fold_dir, train, val, shards))
        for path, shard_fields, is_train in shards:
            if not os.path.exists(path):
                plates = {f.plate for f in shard_fields}
                jobs.append((path, shard_fields, {p: stats[p] for p in plates}, is_train, o))
    total = sum(len(job[1]) for job in jobs)
    dirs = [plan[1] for plan in fold_plans]
    for _ in _run_jobs(shard_job, jobs, pool, progress, total, "shards", dirs,
                       [f"shard {job[0]}" for job in jobs]):
        pass

    manifests = []
    for fold, fold_dir, train, val, shards in fold_plans:
        per_field = {"train": variants_per_field(o, True), "val": variants_per_field(o, False)}
        manifest = {
            "format": "mcnn-keras/bbbc021-tfrecord/1",
            "flags": flags if flags is not None else dataclasses.asdict(o),
            "classes": class_names, "num_classes": len(class_names),
            "channels": ["DAPI (w1, DNA)", "Tubulin (w2)", "Actin (w4)"],
            "image_size": list(output_size(o)),
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
                "unlabelled_rows": unlabelled, "skipped_fields": len(skipped),
            },
            "files": {"train": [os.path.basename(p) for p, _, t in shards if t],
                      "val": [os.path.basename(p) for p, _, t in shards if not t]},
            "normalization": dict(summary, maps_file=os.path.relpath(
                os.path.join(o.output_dir, preprocess.MAPS_NPZ), fold_dir)),
            "skipped": skipped,
        }
        atomic.write_json_atomic(os.path.join(fold_dir, MANIFEST), manifest)
        manifests.append(manifest)
    if len(manifests) == 1:
        return manifests[0]
    index = {"format": "mcnn-keras/bbbc021-folds/1",
             "flags": manifests[0]["flags"], "split": o.split,
             "folds": [{"fold": fold, "fold_name": fold_names[fold],
                        "dir": os.path.basename(fold_dir)}
                       for fold, fold_dir, *_ in fold_plans],
             "counts": {"per_class": manifests[0]["counts"]["per_class"],
                        "unlabelled_rows": unlabelled, "skipped_fields": len(skipped)},
             "normalization": summary, "skipped": skipped}
    atomic.write_json_atomic(os.path.join(o.output_dir, MANIFEST), index)
    return index
