r"""mcnn-convert-images: your own screen (an index CSV, CellProfiler LoadData CSVs or OME-Zarr plates) -> sharded TFRecords + manifest.json.

    mcnn-convert-images --index_csv=screen/index.csv --output_dir=data/screen-plate \
        --channel_columns=dna,tubulin,actin --split=plate --fold=all --workers=2
    mcnn-convert-images --load_data_csv=P1/load_data.csv,P2/load_data.csv \
        --channels=OrigDNA,OrigER,OrigRNA,OrigAGP,OrigMito --labels_csv=well.csv \
        --labels_on=Metadata_Plate,Metadata_Well --label_column=Metadata_JCP2022 \
        --height=1024 --width=1024 --resize=crop --output_dir=data/cp --split=plate

Give exactly one of --index_csv, --load_data_csv and --ome_zarr (OME-Zarr HCS
plates: every field's full-resolution level, --channels naming omero
channels, labels from --labels_csv on Metadata_Plate / Metadata_Well).

The index CSV has one row per field of view: the paths of its channel images
(one or more single-channel 8/16-bit TIFF or PNG files in --channel_columns,
or one multi-channel TIFF in a single column; paths relative to the CSV's
folder), a label column (class name; empty = unlabelled: counted and
skipped), and optional metadata columns plate, well, site, compound,
concentration, replicate (--metadata_columns maps other names; no plate
column = one plate). --channel_order picks the model's input channels (by
default every column: C = their number; two columns: a zero third one).

LoadData CSVs (CellProfiler's, as the Cell Painting Gallery ships them): a
row per field, FileName_<Ch> / PathName_<Ch> per channel (--channels picks
and orders them; DNA matches OrigDNA), Metadata_Plate / _Well / _Site;
labels joined from --labels_csv on --labels_on (JUMP: well.csv,
--label_column=Metadata_JCP2022); --illum=cellprofiler divides each image by
its FileName_Illum<Ch> function instead of estimating our own map.

Writes train-*.tfrecord, val-*.tfrecord, manifest.json (counts, classes and
num_classes, channels, image_size / height / width, what --resize did,
normalisation statistics, these flags), normalization.json +
illumination.npz. Re-running the same command resumes. The same job as
mcnn-convert-bbbc021.
"""

import dataclasses

from mcnn_keras.cli import common, config_flags, conversion
from mcnn_keras.data.conversion.options import (
    INPUT_FLAGS, ImagesOptions, IndexOptions, LoadDataOptions, SharedOptions)

SECTIONS = config_flags.define_sections({"conversion": ImagesOptions})
INPUT = list(INPUT_FLAGS) + ["output_dir"]
INDEX = [f.name for f in dataclasses.fields(IndexOptions)] + ["control_class"]
LOAD_DATA = [f.name for f in dataclasses.fields(LoadDataOptions)]
SHARED = [f.name for f in dataclasses.fields(SharedOptions)]


def _convert():
    from mcnn_keras.data.conversion import convert_images  # pylint: disable=import-outside-toplevel
    return convert_images.convert


def main(argv):
    conversion.run_conversion(argv, SECTIONS, ImagesOptions, INPUT_FLAGS + ("labels_csv",),
                              _convert)


def run():
    common.run_main(main, help_sections=[("input and output", INPUT),
                                         ("index CSV (and every input)", INDEX),
                                         ("LoadData CSVs", LOAD_DATA),
                                         ("conversion", SHARED),
                                         ("output", ["progress", "staging_dir"])])


if __name__ == "__main__":
    run()
