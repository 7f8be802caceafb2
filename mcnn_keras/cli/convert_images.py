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

from mcnn_keras.cli import common, config_flags, conversion
from mcnn_keras.data.conversion.options import IndexOptions, ImagesOptions, SharedOptions

SECTIONS = config_flags.define_sections({"conversion": ImagesOptions})
INPUT = ["index_csv", "output_dir"]
INDEX = [f.name for f in dataclasses.fields(IndexOptions)] + ["control_class"]
SHARED = [f.name for f in dataclasses.fields(SharedOptions)]


def _convert():
    from mcnn_keras.data.conversion import convert_images  # pylint: disable=import-outside-toplevel
    return convert_images.convert


def main(argv):
    conversion.run_conversion(argv, SECTIONS, ImagesOptions, "index_csv", _convert)


def run():
    common.run_main(main, help_sections=[("input and output", INPUT), ("index CSV", INDEX),
                                         ("conversion", SHARED),
                                         ("output", ["progress", "staging_dir"])])


if __name__ == "__main__":
    run()
