"""`mcnn-convert-images`: an index CSV of your own screen -> sharded TFRecords.

The index CSV lists one field of view per row (`fields.read_index_csv`);
unlabelled rows are counted and skipped (training needs labels), and the
labelled fields go through the same job as BBBC021's (`job.convert_fields`):
per plate x channel illumination correction and percentile scaling, splits,
sharded atomic resumable writing, manifest. Class names: --class_names, or
the BBBC021 mechanism-of-action order when every label is one of them, or
the sorted labels found (the manifest's `classes_from` says which).

Usage:

    manifest = convert(ImagesOptions("screen/index.csv", "out", split="plate",
                                     channel_columns="dna,tubulin,actin"))
"""

from mcnn_keras.data.conversion import fields as fields_csv
from mcnn_keras.data.conversion.field import FieldOfView
from mcnn_keras.data.conversion.job import Source, convert_fields
from mcnn_keras.data.conversion.options import check_options


def convert(o, flags=None, progress=True):
    """Runs the whole conversion; returns the manifest dict (index if several folds)."""
    check_options(o)
    fields = fields_csv.read_index_csv(o.index_csv, o)
    labelled = sorted((f for f in fields if f.labelled), key=FieldOfView.key)
    if not labelled:
        why = (f"column {o.label_column!r} is empty in every row" if o.label_column
               else "--label_column is ''")
        raise ValueError(f"{o.index_csv}: no labelled field of view ({why}); the converter "
                         "writes labelled fields only")
    names, origin = fields_csv.class_names_for([f.class_name for f in fields],
                                               o.class_name_list())
    source = Source("images", class_names=tuple(names), classes_from=origin,
                    channels=o.channel_names(), control=o.control_class,
                    unlabelled_rows=len(fields) - len(labelled))
    return convert_fields(labelled, o, source, flags, progress)
