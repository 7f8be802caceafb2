r"""mcnn-convert-bbbc021: the BBBC021 download -> sharded TFRecords + manifest.json.

    mcnn-convert-bbbc021 --bbbc021_dir=BBBC021 --output_dir=data/loco-taxol \
        --split=loco --fold=taxol --dataset=A --workers=2 --drop_dmso

--bbbc021_dir holds BBBC021_v1_image.csv, BBBC021_v1_moa.csv and the plate
folders. Writes train-*.tfrecord, val-*.tfrecord, manifest.json (counts per
class / split / shard, normalisation statistics, these flags),
normalization.json + illumination.npz (reusable at inference). Re-running the
same command resumes: finished shards are skipped. Images are uint8 with
channels (DAPI, Tubulin, Actin).
"""

import sys

from absl import flags

from mcnn_keras.cli import common
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS

flags.DEFINE_string("bbbc021_dir", None, "Folder with the two CSVs and the plate folders.")
flags.DEFINE_string("output_dir", None, "Where shards and manifest.json go.")
flags.DEFINE_enum("split", "random", ["random", "loco", "plate"],
                  "random: image-level (leaky); loco: leave one compound out; "
                  "plate: hold out one plate.")
flags.DEFINE_string("fold", "0", "Fold index, 'all' (one fold-NN/ folder each), or for "
                    "loco a compound name (plate: a plate name).")
flags.DEFINE_enum("dataset", "none", ["none", "A", "B"],
                  "none: fields as they are; A: plus dihedral variants; B: 724x724 "
                  "centre crops of 15-degree rotations (and mirrors).")
flags.DEFINE_integer("workers", 1, "Processes (parallel over plates, then shards).")
flags.DEFINE_float("val_fraction", 0.1, "Validation share for random (and DMSO under loco).")
flags.DEFINE_boolean("drop_dmso", False, "Drop DMSO: the 12-class protocol.")
flags.DEFINE_integer("num_shards", 8, "Training shards (validation gets proportionally fewer).")
flags.DEFINE_enum("on_bad_file", "error", ["error", "skip"],
                  "A bad TIFF stops the job, or its field is skipped and counted.")
flags.DEFINE_enum("augment_mode", "write", ["write", "on_the_fly"],
                  "Dataset A: write the variants, or only originals (train with --augment).")
flags.DEFINE_boolean("augment_val", False, "Also write variants of validation fields.")
flags.DEFINE_integer("rotation_step", 15, "Dataset B rotation step in degrees.")
flags.DEFINE_integer("height", 1024, "Every TIFF must be this high.")
flags.DEFINE_integer("width", 1280, "Every TIFF must be this wide.")
flags.DEFINE_float("illum_sigma", 0.0, "Illumination blur sigma in pixels; 0 = 500 x height/1024.")
flags.DEFINE_integer("seed", 0, "Seed of the splits and shard assignment.")
flags.DEFINE_boolean("progress", True, "Show tqdm progress bars.")
flags.mark_flags_as_required(["bbbc021_dir", "output_dir"])

_OPTION_FLAGS = ("split", "fold", "dataset", "workers", "val_fraction", "drop_dmso",
                 "num_shards", "on_bad_file", "augment_mode", "augment_val",
                 "rotation_step", "height", "width", "illum_sigma", "seed")


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras.bbbc021 import convert  # pylint: disable=import-outside-toplevel
    options = convert.ConvertOptions(
        bbbc021_dir=resolve_user_path(FLAGS.bbbc021_dir),
        output_dir=resolve_user_path(FLAGS.output_dir),
        **{name: FLAGS[name].value for name in _OPTION_FLAGS})
    recorded = {name: FLAGS[name].value
                for name in ("bbbc021_dir", "output_dir", "progress") + _OPTION_FLAGS}
    manifest = convert.convert(options, flags=recorded, progress=FLAGS.progress)
    counts = manifest["counts"]
    print(f"converted {sum(counts['per_class'].values())} fields of view "
          f"({counts['skipped_fields']} skipped) to {options.output_dir}", file=sys.stderr)


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
