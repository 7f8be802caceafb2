"""OME-Zarr HCS plates as a converter input: fields, channels by name, labels joined.

`ome_zarr_plate.read_plate` lists a plate's fields (plate = its name, well =
"A01", site = the field's path "0", "1", ...; one path per field: the image
group, read by `images.read_image`). Here: the channels (`--channels` names
`omero` labels, in model order; '' = every channel of the first plate's
first field, two channels with a zero third one as for any input), and the
labels, joined from `--labels_csv` on `--labels_on`, whose columns map to
the fields' plate / well / site (`Metadata_Plate`, `Metadata_Well`,
`Metadata_Site`: JUMP's and CellProfiler's names). A plate has no labels of
its own: without --labels_csv every field is unlabelled (fine for
prediction).

Usage:

    fields = read_ome_zarr_plates(["P1.zarr", "P2.zarr"], ImagesOptions(
        output_dir="out", channels="DNA,ER,RNA,AGP,Mito", labels_csv="well.csv"))
    channel_names(["P1.zarr"], options)    # ("DNA", "ER", "RNA", "AGP", "Mito")
"""

import dataclasses

from mcnn_keras.data.conversion import labels as labels_table
from mcnn_keras.data.conversion import ome_zarr_plate
from mcnn_keras.data.conversion.field import refuse_duplicates

FIELD_KEYS = {"Metadata_Plate": "plate", "Metadata_Well": "well", "Metadata_Site": "site"}


def _split(value):
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _chosen(urls, options):
    """The omero labels to read, in model order (None = a zero channel)."""
    requested = _split(getattr(options, "channels", ""))
    if requested:
        return requested
    labels = list(ome_zarr_plate.plate_channels(urls[0]))
    return labels + [None] if len(labels) == 2 else labels


def channel_names(urls, options=None):
    """The names of the model's channels read from the plates `urls`."""
    return tuple("zero" if name is None else name for name in _chosen(urls, options))


def _labels(options):
    """The `LabelsTable` of --labels_csv (keys: the fields' plate / well / site), or None."""
    path = getattr(options, "labels_csv", "")
    if not path:
        return None
    on = _split(getattr(options, "labels_on", "Metadata_Plate,Metadata_Well"))
    outside = [c for c in on if c not in FIELD_KEYS]
    if outside:
        raise labels_table.LabelsError(
            f"--labels_on={','.join(on)}: {outside[0]!r} is not a field key of an OME-Zarr "
            f"plate (those are {list(FIELD_KEYS)})")
    return labels_table.read_labels_table(
        path, on, getattr(options, "label_column", labels_table.DEFAULT_LABEL_COLUMN))


def read_ome_zarr_plates(urls, options=None):
    """Every field of the plates `urls` (in order), labelled from --labels_csv if given."""
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError("no OME-Zarr plate given (--ome_zarr)")
    chosen = _chosen(urls, options)
    table = _labels(options)
    fields = []
    for url in urls:
        for field in ome_zarr_plate.read_plate(url, channels=chosen):
            label = table.label_of({c: getattr(field, k) for c, k in FIELD_KEYS.items()}
                                   ) if table else ""
            fields.append(dataclasses.replace(field, class_name=label,
                                              bit_depth=getattr(options, "bit_depth", 0)))
    column = table.column if table else ""
    given = _split(getattr(options, "class_names", ""))
    return refuse_duplicates(labels_table.index_labels(fields, given, column))
