"""`mcnn-convert-images`: your own screen -> sharded TFRecords.

Two inputs list the fields of view (exactly one is given):

- `--index_csv`: the project's index CSV, one row per field
  (`fields.read_index_csv`);
- `--load_data_csv`: CellProfiler LoadData CSVs, e.g. one per plate of a
  Cell Painting Gallery screen (`load_data.read_load_data_csvs`), labels
  joined from `--labels_csv` (JUMP: well.csv) on `--labels_on`;
- `--ome_zarr`: OME-Zarr HCS plates (`ome_zarr_fields.read_ome_zarr_plates`),
  channels by omero name, labels joined from `--labels_csv`.

Unlabelled fields are counted and skipped (training needs labels; the
manifest's `unlabelled_rows`), and the labelled fields go through the same
job as BBBC021's (`job.convert_fields`): per plate x channel illumination
correction (or CellProfiler's functions, `--illum=cellprofiler`) and
percentile scaling, splits, sharded atomic resumable writing, manifest. The
model's channel count C is the number of channels chosen (index CSV: the
channel order; LoadData: `--channels`). Class names: --class_names, or the
BBBC021 mechanism-of-action order when every label is one of them, or the
sorted labels found (the manifest's `classes_from` says which).

Usage:

    manifest = convert(ImagesOptions("screen/index.csv", "out", split="plate",
                                     channel_columns="dna,tubulin,actin"))
    manifest = convert(ImagesOptions(output_dir="cp", load_data_csv="P1/load_data.csv",
                                     labels_csv="well.csv", label_column="Metadata_JCP2022"))
    manifest["channels"]   # ["OrigDNA", "OrigER", "OrigRNA", "OrigAGP", "OrigMito"]
"""

from mcnn_keras.data.conversion import fields as fields_csv
from mcnn_keras.data.conversion import load_data, ome_zarr_fields
from mcnn_keras.data.conversion.field import FieldOfView
from mcnn_keras.data.conversion.job import Source, convert_fields
from mcnn_keras.data.conversion.options import check_options


def _index_csv_fields(o):
    """(fields, channel names or count -> names, where the input is, why no labels)."""
    fields = fields_csv.read_index_csv(o.index_csv, o)
    channels = o.channel_names if o.channel_order_tuple() is None else o.channel_names()
    why = (f"column {o.label_column!r} is empty in every row" if o.label_column
           else "--label_column is ''")
    return fields, channels, o.index_csv, why


def _load_data_fields(o):
    paths = o.load_data_paths()
    fields = load_data.read_load_data_csvs(paths, o)
    channels = load_data.selected_channels(paths[0], o)
    why = (f"no row's key ({o.labels_on}) has a label in {o.labels_csv}" if o.labels_csv
           else "no --labels_csv, and no label column in the CSV")
    return fields, channels, ",".join(paths), why


def _ome_zarr_fields(o):
    paths = o.ome_zarr_paths()
    fields = ome_zarr_fields.read_ome_zarr_plates(paths, o)
    why = (f"no field's key ({o.labels_on}) has a label in {o.labels_csv}" if o.labels_csv
           else "an OME-Zarr plate has no labels; give --labels_csv")
    return fields, ome_zarr_fields.channel_names(paths, o), ",".join(paths), why


READERS = {"index_csv": _index_csv_fields, "load_data_csv": _load_data_fields,
           "ome_zarr": _ome_zarr_fields}


def convert(o, flags=None, progress=True):
    """Runs the whole conversion; returns the manifest dict (index if several folds)."""
    check_options(o)
    fields, channels, where, why = READERS[o.input_flag()](o)
    labelled = sorted((f for f in fields if f.labelled), key=FieldOfView.key)
    if not labelled:
        raise ValueError(f"{where}: no labelled field of view ({why}); the converter "
                         "writes labelled fields only")
    names, origin = fields_csv.class_names_for([f.class_name for f in fields],
                                               o.class_name_list())
    source = Source("images", class_names=tuple(names), classes_from=origin,
                    channels=channels, control=o.control_class,
                    unlabelled_rows=len(fields) - len(labelled))
    return convert_fields(labelled, o, source, flags, progress)
