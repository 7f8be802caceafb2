r"""mcnn-convert-images: your own screen (an index CSV) -> sharded TFRecords + manifest.json.

    mcnn-convert-images --index_csv=screen/index.csv --output_dir=data/screen-plate \
        --channel_columns=dna,tubulin,actin --split=plate --fold=all --workers=2

The index CSV has one row per field of view: the paths of its channel images
(2-4 single-channel 8/16-bit TIFF or PNG files in --channel_columns, or one
multi-channel TIFF in a single column; paths relative to the CSV's folder), a
label column (class name; empty = unlabelled: counted and skipped), and
optional metadata columns plate, well, site, compound, concentration,
replicate (--metadata_columns maps other names; no plate column = one
plate). --channel_order picks the model's 3 input channels (two channels: a
zero third one). Writes train-*.tfrecord, val-*.tfrecord, manifest.json
(counts, class names and where they came from, channels, what --resize did,
normalisation statistics, these flags), normalization.json +
illumination.npz. Re-running the same command resumes. The same job as
mcnn-convert-bbbc021.
"""

import dataclasses
import sys

from absl import flags

from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path
from mcnn_keras.conversion.options import (IndexOptions, ImagesOptions, SharedOptions,
                                           check_local)

FLAGS = flags.FLAGS
SECTIONS = config_flags.define_sections({"conversion": ImagesOptions})
flags.DEFINE_boolean("progress", True, "Show tqdm progress bars.")
INPUT = ["index_csv", "output_dir"]
INDEX = [f.name for f in dataclasses.fields(IndexOptions)] + ["control_class"]
SHARED = [f.name for f in dataclasses.fields(SharedOptions)]


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras import run_dir  # pylint: disable=import-outside-toplevel
    from mcnn_keras.conversion import convert_images  # pylint: disable=import-outside-toplevel
    values = config_flags.values(SECTIONS)
    check_local(index_csv=values["index_csv"], output_dir=values["output_dir"])
    if values["output_dir"]:  # a file or a read-only place: one line naming the flag
        run_dir.make_output_dir(resolve_user_path(values["output_dir"]), "output_dir")
    options = ImagesOptions(**{**values,
                               "index_csv": resolve_user_path(values["index_csv"]),
                               "output_dir": resolve_user_path(values["output_dir"])})
    recorded = {**values, "progress": FLAGS.progress}
    manifest = convert_images.convert(options, flags=recorded, progress=FLAGS.progress)
    counts = manifest["counts"]
    print(f"converted {sum(counts['per_class'].values())} fields of view "
          f"({counts['skipped_fields']} skipped, {counts['unlabelled_rows']} unlabelled) "
          f"to {options.output_dir}", file=sys.stderr)


def run():
    common.run_main(main, help_sections=[("input and output", INPUT), ("index CSV", INDEX),
                                         ("conversion", SHARED), ("output", ["progress"])])


if __name__ == "__main__":
    run()
