"""The options of `mcnn-predict`, light enough for a binary's `--help`.

The `mcnn-predict` flags are generated from `PredictOptions`' fields
(`cli/config_flags.py`), so options and flags cannot drift apart.

Usage:

    options = PredictOptions(saved_model="runs/x/export", inputs="new/BBBC021_v1_image.csv",
                             output_csv="new/predictions.csv")
    check_options(options)        # ValueError naming the flag
"""

import dataclasses

from mcnn_keras.core.options import check_value, option
from mcnn_keras.data.conversion.options import IndexOptions, SharedOptions

_RESIZE = {f.name: f for f in dataclasses.fields(SharedOptions)}["resize"]

DTYPES = ("float32", "mixed_bfloat16")
# How raw 16-bit fields are normalised (the converter's illumination map and
# percentile scaling, with statistics from ...):
#   training: the export's per plate x channel statistics (the converter's);
#   plate:    a first pass over this input's fields of each plate;
#   image:    the field itself (its own percentiles, flat illumination).
NORMALIZATIONS = ("training", "plate", "image")


@dataclasses.dataclass(frozen=True)
class PredictOptions(IndexOptions):
    """What `mcnn-predict` does; its flags are generated from these fields.

    An index CSV is read with the converter's `IndexOptions` (inherited, the
    same flags as `mcnn-convert-images`), and raw fields of another size are
    fitted by its --resize.
    """
    saved_model: str = option("", "The export directory (a run's export/).", required=True)
    inputs: str = option(
        "", "What to classify: a CSV of raw fields (BBBC021's image table or an index "
        "CSV), a glob of 8-bit RGB PNG/TIFF images, or a glob of TFRecord shards "
        "(comma-separated globs allowed).", required=True)
    output_csv: str = option("", "The predictions CSV (written atomically).", required=True)
    features_out: str = option("", "Also write each field's 512-d features with its "
                               "metadata to this Parquet file.")
    moa_csv: str = option("", "BBBC021 input: the MoA table giving true classes "
                          "(default: BBBC021_v1_moa.csv beside the image CSV, if any).")
    normalization: str = option(
        "", "Raw fields: statistics from the export's training data (training; the "
        "default when the export has them), from a first pass over each plate of the "
        "input (plate), or from each field alone (image: its own percentiles, flat "
        "illumination).", choices=("",) + NORMALIZATIONS)
    resize: str = option(_RESIZE.default, "Raw fields of another size than the training "
                         "statistics' (or the export's): error, or centre-crop (crop) or "
                         "zero-pad (pad) them, as the converter's --resize.",
                         choices=_RESIZE.metadata["choices"])
    skip_bad: bool = option(False, "Skip (count and list) bad fields instead of stopping.")
    batch_size: int = option(8, "Fields per prediction batch.", minimum=1)
    dtype: str = option("float32", "Inference precision; mixed_bfloat16 is faster on "
                        "AVX512_BF16/AMX CPUs.", choices=DTYPES)
    readers: int = option(2, "Threads reading and normalising fields ahead of the model.",
                          minimum=1)
    progress: bool = option(True, "Show a progress bar (fields/s).")


def check_options(o):
    """Raises ValueError naming the flag of the first bad option."""
    for field in dataclasses.fields(o):
        check_value(field.name, getattr(o, field.name), field.metadata)
    for name in ("saved_model", "inputs", "output_csv"):
        if not getattr(o, name):
            raise ValueError(f"--{name} is required")
    if o.features_out and not o.features_out.endswith(".parquet"):
        raise ValueError(f"--features_out={o.features_out}: expected a .parquet file name")
    if o.features_out and o.features_out == o.output_csv:
        raise ValueError("--features_out and --output_csv name the same file")
    o.channel_order_tuple()  # the index CSV flags, named if bad
    o.metadata_column_map()
    o.class_name_list()


def index_fields():
    """The names of the index-CSV flags (`IndexOptions`), for the binary's help."""
    return [f.name for f in dataclasses.fields(IndexOptions)]
