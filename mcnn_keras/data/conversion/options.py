"""The converters' options, light enough for a binary's `--help`.

`SharedOptions`: what every converter has (split, shards, derived data set,
normalisation, size); `IndexOptions`: how an index CSV lists a field's
channels, label and metadata; `LoadDataOptions`: how CellProfiler LoadData
CSVs are read (channels, illumination functions, a labels table);
`ImagesOptions` = all three plus input and output for `mcnn-convert-images`.
BBBC021's `ConvertOptions` (bbbc021/options.py)
is `SharedOptions` plus its download folder. Each binary's flags are generated
from these fields (`cli/config_flags.py`), so options and flags cannot drift
apart; shared fields are keyword-only, so `ImagesOptions("index.csv", "out")`
takes its input and output positionally.

Usage:

    options = ImagesOptions("screen/index.csv", "out", split="plate", fold="all",
                            channel_columns="dna,tubulin,actin")
    check_options(options)          # ValueError naming the flag
    options.channel_order_tuple()   # (0, 1, 2); five columns: (0, 1, 2, 3, 4)
    options = ImagesOptions(output_dir="out", load_data_csv="P1/load_data.csv",
                            channels="DNA,ER,RNA,AGP,Mito", labels_csv="well.csv",
                            label_column="Metadata_JCP2022")
"""

import dataclasses
import os

from mcnn_keras.data import classes
from mcnn_keras.io import storage
from mcnn_keras.core.options import check_value, option
from mcnn_keras.data.conversion import augment, splits
from mcnn_keras.data.conversion.field import ZERO_CHANNEL, FieldOfView
from mcnn_keras.data.conversion.images import RESIZE_MODES, default_channel_order

DATASETS = ("none", "A", "B")
# The record schema's metadata (records.METADATA_KEYS) other than the class.
METADATA_COLUMNS = tuple(k for k in FieldOfView().metadata() if k != "class_name")


def distinct_names(value, flag, what):
    """The comma-separated names of `--flag=value`: at least one, none twice."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"--{flag}={value!r}: expected one or more distinct {what}")
    return names


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
        "(one or more, comma-separated: one model channel each), or ONE column holding "
        "a multi-channel file.")
    channel_order: str = option(
        "", "The model's input channels, in order (their count is the model's channel "
        "count): each a channel column name, a 0-based channel index, or 'zero'. '' = "
        "every column in order; with two columns '0,1,zero'; one multi-channel file "
        "column: all its channels (two: '0,1,zero').")
    label_column: str = option("label", "Column of class names (empty cell = unlabelled); "
                               "'' = no labels at all. LoadData input: the label column "
                               "of --labels_csv (default there: Metadata_JCP2022, or its "
                               "one column besides --labels_on), else a column of the "
                               "LoadData CSV if it has one.")
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
        return distinct_names(self.channel_columns, "channel_columns",
                              "columns (or one multi-channel file column)")

    def channel_order_tuple(self):
        """Indices of the model's C channels (ZERO_CHANNEL = zeros); None = by file.

        Default: every column in order (C = the number of columns), except
        that two columns keep (0, 1, zero); one multi-channel file column
        gives None (`images.default_channel_order` of the file's count).
        """
        columns = self.channel_column_list()
        if not self.channel_order.strip():
            if len(columns) == 1:
                return None
            return default_channel_order(len(columns))
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
        if all(i == ZERO_CHANNEL for i in order):
            raise ValueError(f"--channel_order={self.channel_order!r}: expected one or "
                             "more entries, not all 'zero'")
        return tuple(order)

    def channel_names(self, count=None):
        """Names of the model's input channels (for the manifest and statistics).

        `count`: the channels of a multi-channel file, when --channel_order
        is '' and there is one column (the names depend on the file).
        """
        columns = self.channel_column_list()
        order = self.channel_order_tuple()
        if order is None:  # one multi-channel file column, channels by count
            if count is None:
                raise ValueError("channel_names: the file's channel count is needed")
            order = default_channel_order(count)
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


ILLUM_MODES = ("estimate", "cellprofiler")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadDataOptions:
    """How CellProfiler LoadData CSVs are read: channels, illumination, labels."""
    channels: str = option(
        "", "LoadData CSVs: the channels, in order, by the names of their FileName_<name> "
        "/ PathName_<name> columns, e.g. OrigDNA,OrigER,OrigRNA,OrigAGP,OrigMito (the "
        "Orig prefix may be left out: DNA matches OrigDNA); '' = every Orig* channel in "
        "column order (no Orig* columns: every channel but the Illum* ones).")
    illum: str = option(
        "estimate", "LoadData CSVs: estimate: our own illumination map per plate x channel "
        "(as for any input); cellprofiler: divide each image by its CellProfiler "
        "illumination function (the FileName_Illum<Ch> / PathName_Illum<Ch> .npy files, "
        "as in load_data_with_illum.csv) and skip our map. The percentile scaling "
        "follows in both.", choices=ILLUM_MODES)
    labels_csv: str = option(
        "", "LoadData CSVs: a table of labels joined on --labels_on (JUMP: well.csv with "
        "--label_column=Metadata_JCP2022); '' = labels from the LoadData CSV's own "
        "--label_column if it has one, else unlabelled.")
    labels_on: str = option(
        "Metadata_Plate,Metadata_Well", "The columns joining --labels_csv to the LoadData "
        "rows (the same names in both tables).")

    def labels_on_list(self):
        return distinct_names(self.labels_on, "labels_on", "column names")


@dataclasses.dataclass(frozen=True)
class ImagesOptions(IndexOptions, LoadDataOptions, SharedOptions):
    """`mcnn-convert-images`: an index CSV or LoadData CSVs -> sharded TFRecords; its
    flags come from here."""
    index_csv: str = option("", "The index CSV: one row per field of view (paths relative "
                            "to the CSV's folder). Give it, --load_data_csv or --ome_zarr.")
    output_dir: str = option("", "Where shards and manifest.json go (a local directory).",
                             required=True)
    _: dataclasses.KW_ONLY
    load_data_csv: str = option(
        "", "CellProfiler LoadData CSVs (comma-separated, e.g. one load_data.csv per "
        "plate, read in order): a row per field, FileName_<Ch> / PathName_<Ch> per "
        "channel (PathName relative to the CSV's folder or absolute), Metadata_Plate, "
        "Metadata_Well, Metadata_Site. Give it, --index_csv or --ome_zarr.")
    ome_zarr: str = option(
        "", "OME-Zarr HCS plates (comma-separated local .zarr folders, NGFF 0.4 or 0.5): "
        "every field's full-resolution level; --channels picks and orders their omero "
        "channel names ('' = all); labels only from --labels_csv (keys Metadata_Plate, "
        "Metadata_Well, Metadata_Site = the plate's name, well A01, field path).")
    control_class: str = option(classes.DMSO, "The control class: no loco fold of its own "
                                "(split at random), dropped by --drop_dmso.")

    def input_flag(self):
        """The input flag given: one of `INPUT_FLAGS` (ValueError otherwise)."""
        given = [name for name in INPUT_FLAGS if getattr(self, name).strip()]
        if len(given) != 1:
            what = (f"{' and '.join('--' + g for g in given)} are given" if given
                    else "none is given")
            raise ValueError(f"give exactly one of --index_csv, --load_data_csv and "
                             f"--ome_zarr ({what})")
        return given[0]

    def load_data_paths(self):
        return [p.strip() for p in self.load_data_csv.split(",") if p.strip()]

    def ome_zarr_paths(self):
        return [p.strip().rstrip("/") for p in self.ome_zarr.split(",") if p.strip()]


INPUT_FLAGS = ("index_csv", "load_data_csv", "ome_zarr")


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


def _check_file(flag, path):
    check_local(**{flag: path})
    if not os.path.isfile(path):
        raise ValueError(f"--{flag} {path}: file not found")


def check_options(o):
    """`ImagesOptions` check: ranges, one input, local paths, the CSVs, channel flags."""
    check_values(o)
    kind = o.input_flag()
    check_local(output_dir=o.output_dir)
    if kind == "index_csv":
        loaddata_only = {"channels": o.channels, "labels_csv": o.labels_csv,
                         "illum": o.illum != "estimate" and o.illum}
        for flag, value in loaddata_only.items():
            if value:
                raise ValueError(f"--{flag}={value}: for LoadData CSVs (--load_data_csv); "
                                 "an index CSV names its channels with --channel_columns")
        _check_file("index_csv", o.index_csv)
        o.channel_order_tuple()
        o.metadata_column_map()
    elif kind == "ome_zarr":
        if o.illum != "estimate":
            raise ValueError(f"--illum={o.illum}: for LoadData CSVs; an OME-Zarr plate gets "
                             "our own illumination map")
        from mcnn_keras.data.conversion import ome_zarr_plate  # pylint: disable=import-outside-toplevel
        for path in o.ome_zarr_paths():
            check_local(ome_zarr=path)
            if not ome_zarr_plate.is_plate(path):
                raise ValueError(f"--ome_zarr {path}: not an OME-Zarr HCS plate (no folder "
                                 "with 'plate' metadata there)")
        if o.labels_csv:
            _check_file("labels_csv", o.labels_csv)
    else:
        paths = o.load_data_paths()
        if len(set(map(os.path.abspath, paths))) != len(paths):
            raise ValueError(f"--load_data_csv={o.load_data_csv}: a CSV is listed twice")
        for path in paths:
            _check_file("load_data_csv", path)
        if o.labels_csv:
            _check_file("labels_csv", o.labels_csv)
        o.labels_on_list()
    o.class_name_list()
