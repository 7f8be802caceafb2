"""Benchmark: mcnn-predict throughput at full size (1024 x 1280), fields/s.

Prepares once under --work_dir: a full-size BBBC021-like fixture (2 plates,
one well per class plus DMSO and an unlabelled one, --sites fields per well;
16-bit TIFFs), its conversion to TFRecords (the statistics the export
carries), and an export of an untrained M-CNN (speed does not depend on the
weights) with those statistics. Then runs the real `mcnn-predict` for each
source (raw TIFFs through BBBC021's image table with the training
normalisation; the converted TFRecords) and dtype, and prints its JSON line
per configuration with the CPU model added. `seconds` excludes loading the
model (`load_seconds`).

    python tools/bench_predict.py --sites=1 --dtypes=float32,mixed_bfloat16
"""

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
from mcnn_keras.data.bbbc021 import options
from mcnn_keras.export import info

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cpu_model():
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return f"{names[0] if names else platform.processor()} x {os.cpu_count()}"


def prepare(work_dir, sites):
    """(image CSV, TFRecord glob, export dir) under `work_dir`, made once."""
    from mcnn_keras.export import saved_model as export  # pylint: disable=import-outside-toplevel
    from mcnn_keras.data.bbbc021 import convert, fixture  # pylint: disable=import-outside-toplevel
    from mcnn_keras.model.network import build_model  # pylint: disable=import-outside-toplevel
    raw, data, exported = (os.path.join(work_dir, name) for name in ("raw", "data", "export"))
    if not os.path.exists(os.path.join(raw, "BBBC021_v1_image.csv")):
        fixture.write_fixture(raw, 1024, 1280, plates=2, sites=sites)
    if not os.path.exists(os.path.join(data, "manifest.json")):
        convert.convert(options.ConvertOptions(raw, data, val_fraction=0.5, num_shards=2))
    if not os.path.exists(os.path.join(exported, info.MARKER)):
        from mcnn_keras.data import classes  # pylint: disable=import-outside-toplevel
        model = build_model(1024, 1280, num_classes=len(classes.MOA_CLASSES))
        export.export_saved_model(model, exported, classes.MOA_CLASSES,
                                  train_files=os.path.join(data, "train-*.tfrecord"))
    records = ",".join(sorted(glob.glob(os.path.join(data, "*-*-of-*.tfrecord"))))
    return os.path.join(raw, "BBBC021_v1_image.csv"), records, exported


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="out/bench-predict")
    parser.add_argument("--sites", type=int, default=1)
    parser.add_argument("--dtypes", default="float32,mixed_bfloat16")
    parser.add_argument("--sources", default="raw,tfrecords")
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()
    image_csv, records, exported = prepare(args.work_dir, args.sites)
    inputs = {"raw": image_csv, "tfrecords": records}
    for source in args.sources.split(","):
        for dtype in args.dtypes.split(","):
            out = os.path.join(args.work_dir, f"predictions-{source}-{dtype}.csv")
            result = subprocess.run(
                [sys.executable, "-m", "mcnn_keras.cli.predict", f"--saved_model={exported}",
                 f"--inputs={inputs[source]}", f"--output_csv={out}", f"--dtype={dtype}",
                 f"--batch_size={args.batch_size}", "--noprogress"],
                capture_output=True, text=True, check=False)
            if result.returncode != 0:
                sys.exit(f"mcnn-predict failed ({source}, {dtype}): "
                         f"{result.stderr.strip().splitlines()[-1]}")
            line = json.loads(result.stdout.strip().splitlines()[-1])
            print(json.dumps({"bench": "predict", "cpu": cpu_model(), "input": source,
                              **{k: line.get(k) for k in (
                                  "dtype", "batch_size", "fields", "seconds", "fields_per_s",
                                  "load_seconds", "normalization", "height", "width")}}),
                  flush=True)


if __name__ == "__main__":
    main()
