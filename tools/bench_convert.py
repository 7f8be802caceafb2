"""Benchmark: BBBC021 conversion throughput at full size (1024 x 1280).

Writes a full-size layout-faithful fixture (2 plates, one well per class plus
DMSO and an unlabelled well, `--sites` fields per well), then converts it
(`--dataset none`, random split) with --workers 1 and 2 and prints JSON:
fields of view per second over the whole job (both passes: statistics, then
normalise + write shards; for 2 workers including starting the processes, each
of which imports TensorFlow), and the same after subtracting a separately
measured worker start-up time (what a long real job approaches).

    python tools/bench_convert.py --sites=1 --workers=1,2
"""

import argparse
import importlib
import json
import multiprocessing
import os
import platform
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mcnn_keras.data.bbbc021 import convert, fixture  # pylint: disable=wrong-import-position
from mcnn_keras.data.bbbc021 import options as bbbc021_options


def worker_startup_seconds(workers):
    """Time for a spawned pool whose workers import the converter (and TensorFlow)."""
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_ready_import, range(workers))
    return time.perf_counter() - start


def _ready_import(_):
    importlib.import_module("mcnn_keras.data.bbbc021.convert")  # what a worker pays for
    return os.getpid()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--sites", type=int, default=1)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--dataset", default="none")
    parser.add_argument("--keep", default="", help="keep the fixture in this directory")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="bench_convert_")
    try:
        root = args.keep or os.path.join(scratch, "bbbc021")
        if not os.path.exists(os.path.join(root, "BBBC021_v1_image.csv")):
            fixture.write_fixture(root, args.height, args.width, plates=2, sites=args.sites,
                                  compounds_per_class=1, dmso_wells=2, seed=0, progress=False)
        results = []
        for workers in [int(w) for w in args.workers.split(",")]:
            out = os.path.join(scratch, f"out-{workers}")
            options = bbbc021_options.ConvertOptions(root, out, height=args.height, width=args.width,
                                             dataset=args.dataset, workers=workers,
                                             num_shards=4)
            start = time.perf_counter()
            manifest = convert.convert(options, progress=False)
            seconds = time.perf_counter() - start
            fields = sum(manifest["counts"]["per_class"].values())
            records = sum(s["records"] for s in manifest["counts"]["per_split"].values())
            size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)
                       if f.endswith(".tfrecord"))
            startup = worker_startup_seconds(workers) if workers > 1 else 0.0
            results.append({"workers": workers, "fields": fields, "records": records,
                            "seconds": round(seconds, 2),
                            "fields_per_second": round(fields / seconds, 2),
                            "worker_startup_seconds": round(startup, 2),
                            "fields_per_second_after_startup": round(
                                fields / max(seconds - startup, 1e-9), 2),
                            "output_mb": round(size / 1e6, 1)})
        print(json.dumps({"benchmark": "bbbc021_convert", "height": args.height,
                          "width": args.width, "dataset": args.dataset,
                          "cpu_count": os.cpu_count(), "machine": platform.processor(),
                          "results": results}, indent=2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
