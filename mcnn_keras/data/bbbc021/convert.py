"""The BBBC021 conversion: the download's CSV join, then the generic job.

`metadata.read_fields` joins BBBC021_v1_image.csv with BBBC021_v1_moa.csv
into labelled fields of view (unlabelled rows are counted); everything after
that (statistics, splits, sharded resumable writing, manifest) is
`conversion.job`, shared with `mcnn-convert-images`. Classes are the 13
mechanisms of action in their fixed order (12 with --drop_dmso); channels
(DAPI, Tubulin, Actin).

Usage:

    manifest = convert(ConvertOptions("BBBC021", "out", split="loco", fold="taxol"))
    manifest["counts"]["per_class"]       # {"Actin disruptors": 36, ...}
"""

from mcnn_keras.data import classes
from mcnn_keras.data.bbbc021 import metadata
from mcnn_keras.data.bbbc021.options import check_options
from mcnn_keras.data.conversion.job import Source, convert_fields

CHANNEL_LABELS = ("DAPI (w1, DNA)", "Tubulin (w2)", "Actin (w4)")


def convert(o, flags=None, progress=True):
    """Runs the whole conversion; returns the manifest dict (index if several folds)."""
    check_options(o)
    fields, unlabelled = metadata.read_fields(o.bbbc021_dir)
    if not fields:
        raise ValueError(f"{o.bbbc021_dir}: no labelled field of view (no row of "
                         f"{metadata.IMAGE_CSV} matches {metadata.MOA_CSV})")
    source = Source("bbbc021", class_names=classes.MOA_CLASSES,
                    classes_from=f"the BBBC021 mechanisms of action ({metadata.MOA_CSV})",
                    channels=metadata.CHANNELS, channel_labels=CHANNEL_LABELS,
                    unlabelled_rows=unlabelled)
    return convert_fields(fields, o, source, flags, progress)
