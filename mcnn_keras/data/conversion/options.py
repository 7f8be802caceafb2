"""The converters' options, light enough for a binary's `--help`.

`SharedOptions`: what every converter has (split, shards, derived data set,
normalisation, size); `IndexOptions`: how an index CSV lists a field's
channels, label and metadata; `ImagesOptions` = both plus input and output
for `mcnn-convert-images`. BBBC021's `ConvertOptions` (bbbc021/options.py)
is `SharedOptions` plus its download folder. Each binary's flags are generated
from these fields (`cli/config_flags.py`), so options and flags cannot drift
apart; shared fields are keyword-only, so `ImagesOptions("index.csv", "out")`
takes its input and output positionally.

Usage:

    options = ImagesOptions("screen/index.csv", "out", split="plate", fold="all",
                            channel_columns="dna,tubulin,actin")
    check_options(options)          # ValueError naming the flag
    options.channel_order_tuple()   # (0, 1, 2)
"""

import dataclasses
import os

from mcnn_keras.data import classes
from mcnn_keras.io import storage
from mcnn_keras.core.options import check_value, option
from mcnn_keras.data.conversion import augment, splits
from mcnn_keras.data.conversion.field import ZERO_CHANNEL, FieldOfView
from mcnn_keras.data.conversion.images import RESIZE_MODES

DATASETS = ("none", "A", "B")
# The record schema's metadata (records.METADATA_KEYS) other than the class.
METADATA_COLUMNS = tuple(k for k in FieldOfView().metadata() if k != "class_name")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SharedOptions:
    """Splits, shards, derived data sets, normalisation and size, for every converter."""
    split: str = option("random", "random: image-level (leaky); loco: leave one compound "
                        "out; plate: hold out one plate.", choices=tuple(splits.SPLITS))
    fold: str = option("0", "Fold index, 'all' (one fold-NN/ folder each), or for loco a "
                       "compound name (plate: a plate name).")
    dataset: str = option("none", "none: fields as they are; A: plus their dihedral "
                          "variants (mcnn_keras/data/dihedral.py); B: 724x724 centre crops of "
                          "15-degree rotations (and mirrors).", choices=DATASETS)
    workers: int = option(1, "Processes (parallel over plates, then shards).", minimum=1)
    val_fraction: float = option(0.1, "Validation share for random (and DMSO under loco).",
                                 minimum=0.0)
    drop_dmso: bool = option(False, "Drop DMSO (mcnn-convert-images: the --control_class): "
                             "the 12-class protocol.")
    num_shards: int = option(8, "Training shards (validation gets proportionally fewer).",
                             minimum=1)
    on_bad_file: str = option("error", "A bad image file stops the job, or its field is "
                              "skipped and counted.", choices=("error", "skip"))
    augment_mode: str = option("write", "Dataset A: write the variants, or only originals "
                               "(train with --augment).", choices=("write", "on_the_fly"))
    augment_val: bool = option(False, "Also write variants of validation fields.")
    rotation_step: int = option(15, "Dataset B rotation step in degrees.", above=0)
    height: int = option(1024, "Image height the records get (a multiple of 128 trains "
                         "as is; see --resize).", minimum=8)
    width: int = option(1280, "Image width the records get.", minimum=8)
    resize: str = option("error", "Images of another size: error, or centre-crop larger "
                         "sides (crop), or zero-pad smaller ones (pad) to --height x "
                         "--width; the manifest records what was done.",
                         choices=RESIZE_MODES)
    illum_sigma: float = option(0.0, "Illumination blur sigma in pixels; 0 = 500 x "
                                "height/1024.", minimum=0.0)
    seed: int = option(0, "Seed of the splits and shard assignment.", minimum=0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class IndexOptions:
    """How an index CSV (one row per field of view) lists channels, label, metadata."""
    channel_columns: str = option(
        "DAPI,Tubulin,Actin", "Columns holding each field's single-channel image files "
        "(2-4, comma-separated), or ONE column holding a multi-channel file.")
    channel_order: str = option(
        "", "The model's 3 input channels, in order: each a channel column name, a 0-based "
        "channel index, or 'zero'. '' = the first three; with two channels '0,1,zero'.")
    label_column: str = option("label", "Column of class names (empty cell = unlabelled); "
                               "'' = no labels at all.")
    metadata_columns: str = option(
        "", "key=column pairs for metadata in other columns, e.g. 'plate=Plate,well=Well'; "
        "by default plate, well, site, compound, concentration, replicate come from "
        "columns of those names when present. No plate column = one plate.")
    bit_depth: int = option(0, "Every image file must have this bit depth (8 or 16); 0 = "
                            "either (the same on a plate).", choices=(0, 8, 16))
    class_names: str = option(
        "", "Comma-separated class names in label order; '' = the BBBC021 mechanism-of-"
        "action order if every label is one of them, else the sorted labels found.")

    def channel_column_list(self):
        columns = [c.strip() for c in self.channel_columns.split(",") if c.strip()]
        if not 1 <= len(columns) <= 4 or len(set(columns)) != len(columns):
            raise ValueError(f"--channel_columns={self.channel_columns!r}: expected 2-4 "
                             "distinct columns (or one multi-channel file column)")
        return columns

    def channel_order_tuple(self):
        """Indices of the model's 3 channels (ZERO_CHANNEL = zeros); None = by count."""
        columns = self.channel_column_list()
        if not self.channel_order.strip():
            if len(columns) == 1:
                return None  # decided per file: first three, or (0, 1, zero) for two
            return (0, 1, ZERO_CHANNEL) if len(columns) == 2 else (0, 1, 2)
        entries = [e.strip() for e in self.channel_order.split(",")]
        order = []
        for entry in entries:
            if entry.lower() == "zero":
                order.append(ZERO_CHANNEL)
            elif entry in columns and len(columns) > 1:
                order.append(columns.index(entry))
            elif entry.isdigit() and (len(columns) == 1 or int(entry) < len(columns)):
                order.append(int(entry))
            else:
                raise ValueError(f"--channel_order={self.channel_order!r}: {entry!r} is "
                                 f"neither one of the channel columns {columns}, a channel "
                                 "index nor 'zero'")
        if len(order) != 3 or all(i == ZERO_CHANNEL for i in order):
            raise ValueError(f"--channel_order={self.channel_order!r}: expected 3 entries, "
                             "not all 'zero'")
        return tuple(order)

    def channel_names(self):
        """Names of the model's 3 input channels (for the manifest and statistics)."""
        columns = self.channel_column_list()
        order = self.channel_order_tuple()
        if order is None:  # one multi-channel file column, channels by count
            return (f"{columns[0]}[0]", f"{columns[0]}[1]", f"{columns[0]}[2] or zero")
        return tuple("zero" if i == ZERO_CHANNEL else
                     columns[i] if len(columns) > 1 else f"{columns[0]}[{i}]" for i in order)

    def metadata_column_map(self):
        """{metadata key: column}, and the set of keys named explicitly."""
        mapping = {key: key for key in METADATA_COLUMNS}
        explicit = set()
        for pair in filter(None, (p.strip() for p in self.metadata_columns.split(","))):
            key, _, column = (s.strip() for s in pair.partition("="))
            if key not in METADATA_COLUMNS or not column:
                raise ValueError(f"--metadata_columns={self.metadata_columns!r}: {pair!r} is "
                                 f"not key=column with a key in {list(METADATA_COLUMNS)}")
            mapping[key] = column
            explicit.add(key)
        return mapping, explicit

    def class_name_list(self):
        names = [n.strip() for n in self.class_names.split(",") if n.strip()]
        if len(set(names)) != len(names):
            raise ValueError(f"--class_names={self.class_names!r}: a name occurs twice")
        return names


@dataclasses.dataclass(frozen=True)
class ImagesOptions(IndexOptions, SharedOptions):
    """`mcnn-convert-images`: an index CSV -> sharded TFRecords; its flags come from here."""
    index_csv: str = option("", "The index CSV: one row per field of view (paths relative "
                            "to the CSV's folder).", required=True)
    output_dir: str = option("", "Where shards and manifest.json go (a local directory).",
                             required=True)
    _: dataclasses.KW_ONLY
    control_class: str = option(classes.DMSO, "The control class: no loco fold of its own "
                                "(split at random), dropped by --drop_dmso.")


def check_values(o):
    """Raises ValueError naming the flag of the first option out of range."""
    for field in dataclasses.fields(o):
        check_value(field.name, getattr(o, field.name), field.metadata)
    augment.rotation_angles(o.rotation_step)


def check_local(**paths):
    """Refuses URLs (s3://, gs://, ...) for the given `--flag=path`s in one line.

    The conversion job lists, resumes and writes shards with local file
    calls; a URL would fail late, after the statistics pass. (The converter
    binaries take an --output_dir URL: they stage locally and upload,
    `cli/conversion.py`.)
    """
    for flag, path in paths.items():
        if storage.scheme(path):
            raise ValueError(f"--{flag}={path}: the conversion job reads and writes local "
                             "files only (mcnn-convert-images and mcnn-convert-bbbc021 "
                             "stage an --output_dir URL locally and upload it)")


def check_options(o):
    """`ImagesOptions` check: ranges, local paths, the index CSV, channel flags."""
    check_values(o)
    check_local(index_csv=o.index_csv, output_dir=o.output_dir)
    if not os.path.isfile(o.index_csv):
        raise ValueError(f"--index_csv {o.index_csv}: file not found")
    o.channel_order_tuple()
    o.metadata_column_map()
    o.class_name_list()
