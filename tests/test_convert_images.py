"""mcnn-convert-images: an index CSV -> the same records as the BBBC021 converter.

The BBBC021 fixture (128 x 128, real layout) is listed in index CSVs of
several kinds: its own 16-bit TIFFs, 8-bit PNGs, one multi-channel TIFF per
field, 2 and 4 channels, larger fields cropped back. Where the pixels are the
fixture's, the shards must equal `mcnn-convert-bbbc021`'s byte for byte.
Bad input goes through the real binary: one line naming file, row, column.
"""

import csv
import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from mcnn_keras.io import atomic
from mcnn_keras.io import records
from mcnn_keras.data.bbbc021 import convert as bbbc021_convert
from mcnn_keras.data.bbbc021 import fixture, metadata
from mcnn_keras.data.conversion import convert_images, fields, images, normalization
from mcnn_keras.data.conversion.field import FieldOfView
from mcnn_keras.data.bbbc021 import options as bbbc021_options
from mcnn_keras.data.conversion import options as conversion_options
from cli_util import assert_one_line_error, defined_flags, run_binary
import cell_painting_fixture as cp

SIZE = 128
SPLIT = dict(height=SIZE, width=SIZE, num_shards=2, split="loco", fold="1", seed=2)
CHANNELS = metadata.CHANNELS  # DAPI, Tubulin, Actin
META = ("plate", "well", "site", "compound", "concentration", "replicate")


@pytest.fixture(scope="module")
def bbbc021(tmp_path_factory):
    root = tmp_path_factory.mktemp("bbbc021")
    fixture.write_fixture(str(root), SIZE, SIZE, plates=2, sites=1, compounds_per_class=1,
                          seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def table(bbbc021):
    """Every row of the fixture's image table (labelled or not), in row order."""
    return metadata.read_bbbc021_table(str(bbbc021 / metadata.IMAGE_CSV),
                                     str(bbbc021 / metadata.MOA_CSV))


@pytest.fixture(scope="module")
def reference(bbbc021, tmp_path_factory):
    """mcnn-convert-bbbc021's output on the fixture."""
    out = tmp_path_factory.mktemp("reference")
    manifest = bbbc021_convert.convert(bbbc021_options.ConvertOptions(
        str(bbbc021), str(out), **SPLIT), progress=False)
    return out, manifest


def write_index(path, table, files, columns=CHANNELS, meta=META, label="label"):
    """An index CSV: one row per table row, `files(field)` = its channel file names."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(columns) + ([label] if label else []) + list(meta))
        for field in table:
            writer.writerow(list(files(field)) + ([field.class_name] if label else [])
                            + [getattr(field, key) for key in meta])
    return path


def relative(root):
    return lambda field: [os.path.relpath(p, root) for p in field.paths]


def shards(directory):
    return {os.path.basename(p): open(p, "rb").read()
            for p in sorted(glob.glob(os.path.join(directory, "*.tfrecord")))}


def planes(field):
    return [tifffile.imread(p) for p in field.paths]


def derived(table, root, make):
    """Writes `make(field) -> {file name: array}` per field; returns (field, names)."""
    result = {}
    for field in table:
        stem = f"{field.plate}_{field.well}_s{field.site}"
        names = []
        for suffix, array in make(field).items():
            path = root / f"{stem}_{suffix}"
            if suffix.endswith(".png"):
                Image.fromarray(array).save(path)
            else:
                tifffile.imwrite(path, array, photometric="minisblack")
            names.append(path.name)
        result[field.row] = names
    return lambda field: result[field.row]


def options(index, out, **kwargs):
    return conversion_options.ImagesOptions(str(index), str(out), **{**SPLIT, **kwargs})


# --- the same records as mcnn-convert-bbbc021 ----------------------------------------

def test_index_csv_of_the_fixture_gives_the_bbbc021_converters_records(
        bbbc021, table, reference, tmp_path):
    ref_dir, ref_manifest = reference
    index = write_index(bbbc021 / "index.csv", table, relative(bbbc021))
    out = tmp_path / "out"
    result = run_binary("mcnn_keras.cli.convert_images", f"--index_csv={index}",
                        f"--output_dir={out}", "--noprogress",
                        *[f"--{k}={v}" for k, v in SPLIT.items()])
    assert result.returncode == 0, result.stderr[-3000:]
    expected = shards(ref_dir)
    assert len(expected) >= 3 and shards(out) == expected  # byte for byte
    for name in (normalization.STATS_JSON, normalization.MAPS_NPZ):
        assert (out / name).read_bytes() == (ref_dir / name).read_bytes(), name
    manifest = json.loads((out / "manifest.json").read_text())
    unlabelled = sum(not f.labelled for f in table)
    assert unlabelled == 2  # one unlabelled well per plate: counted, skipped, reported
    assert manifest["counts"]["unlabelled_rows"] == unlabelled
    for key in ("classes", "counts", "files", "split", "image_size"):
        assert manifest[key] == ref_manifest[key], key
    assert manifest["classes_from"] == fields.MOA_ORDER
    assert manifest["channels"] == list(CHANNELS)
    assert manifest["resize"]["fields_resized"] == 0


def test_one_multi_channel_tiff_per_field_in_another_channel_order(
        bbbc021, table, reference, tmp_path):
    # Stored as (Actin, DAPI, Tubulin) pages; --channel_order puts DAPI first again.
    files = derived(table, tmp_path, lambda f: {
        "stack.tif": np.stack([planes(f)[2], planes(f)[0], planes(f)[1]])})
    index = write_index(tmp_path / "index.csv", table, files, columns=["image"])
    manifest = convert_images.convert(options(index, tmp_path / "out", channel_columns="image",
                                              channel_order="1,2,0"), progress=False)
    assert shards(tmp_path / "out") == shards(reference[0])
    assert manifest["channels"] == ["image[1]", "image[2]", "image[0]"]


def test_one_multi_channel_column_by_default_takes_all_its_channels(
        bbbc021, table, reference, tmp_path):
    files = derived(table, tmp_path, lambda f: {"stack.tif": np.stack(planes(f))})
    index = write_index(tmp_path / "index.csv", table, files, columns=["image"])
    manifest = convert_images.convert(options(index, tmp_path / "out", channel_columns="image"),
                                      progress=False)
    assert shards(tmp_path / "out") == shards(reference[0])  # three pages: today's records
    assert manifest["channels"] == ["image[0]", "image[1]", "image[2]"]
    # One file with a fourth page: one channel count per conversion, named in one line.
    first = next(f for f in table if f.labelled)
    tifffile.imwrite(tmp_path / f"{first.plate}_{first.well}_s{first.site}_stack.tif",
                     np.stack(planes(first) + [planes(first)[0]]), photometric="minisblack")
    with pytest.raises(images.ImageError, match="3 channels, but .*_stack.tif on plate .* has "
                       "4 .one channel count per conversion"):
        convert_images.convert(options(index, tmp_path / "four", channel_columns="image"),
                               progress=False)


def test_four_channel_columns_mapped_by_name(bbbc021, table, reference, tmp_path):
    extra = derived(table, tmp_path, lambda f: {
        "junk.tif": np.full((SIZE, SIZE), 7, np.uint16)})
    def files(field):
        dapi, tubulin, actin = field.paths
        return [os.path.relpath(actin, tmp_path), extra(field)[0],
                os.path.relpath(dapi, tmp_path), os.path.relpath(tubulin, tmp_path)]
    index = write_index(tmp_path / "index.csv", table, files,
                        columns=["actin", "junk", "dna", "tubulin"])
    convert_images.convert(options(index, tmp_path / "out", channel_columns="actin,junk,dna,"
                                   "tubulin", channel_order="dna,tubulin,actin"),
                           progress=False)
    assert shards(tmp_path / "out") == shards(reference[0])


def examples(directory):
    """{(plate, well, site): (image, label)} of every shard in `directory`."""
    found = {}
    for path in glob.glob(os.path.join(directory, "*.tfrecord")):
        for image, label, meta in records.read_examples(path):
            found[(meta["plate"], meta["well"], meta["site"])] = (image, label)
    return found


def test_two_channels_give_a_zero_third_channel(bbbc021, table, reference, tmp_path):
    index = write_index(tmp_path / "index.csv", table,
                        lambda f: [os.path.relpath(p, tmp_path) for p in f.paths[:2]],
                        columns=["DAPI", "Tubulin"])
    manifest = convert_images.convert(options(index, tmp_path / "out",
                                              channel_columns="DAPI,Tubulin"), progress=False)
    assert manifest["channels"] == ["DAPI", "Tubulin", "zero"]
    two, three = examples(tmp_path / "out"), examples(reference[0])
    assert two.keys() == three.keys() and len(two) == sum(f.labelled for f in table)
    for key, (image, label) in two.items():
        # Statistics are per channel: the two real channels are the fixture's.
        np.testing.assert_array_equal(image[..., :2], three[key][0][..., :2])
        assert not image[..., 2].any() and label == three[key][1]


def test_four_columns_give_four_channels_and_three_stay_as_they_are(
        bbbc021, table, reference, tmp_path):
    rng = np.random.default_rng(5)
    extra = derived(table, tmp_path, lambda f: {
        "junk.tif": rng.integers(100, 4000, (SIZE, SIZE)).astype(np.uint16)})
    index = write_index(tmp_path / "index.csv", table, lambda f: [
        os.path.relpath(p, tmp_path) for p in f.paths] + extra(f),
        columns=list(CHANNELS) + ["junk"])
    manifest = convert_images.convert(options(index, tmp_path / "out", channel_columns=
                                              ",".join(CHANNELS) + ",junk"), progress=False)
    assert manifest["channels"] == list(CHANNELS) + ["junk"]
    four, three = examples(tmp_path / "out"), examples(reference[0])
    assert four.keys() == three.keys()
    for key, (image, label) in four.items():
        assert image.shape == (SIZE, SIZE, 4) and label == three[key][1]
        # Statistics are per channel: the first three are the 3-channel records'.
        np.testing.assert_array_equal(image[..., :3], three[key][0])
    stats = json.loads((tmp_path / "out" / normalization.STATS_JSON).read_text())
    assert stats["channels"] == list(CHANNELS) + ["junk"] and "illumination" not in stats
    assert all(len(p["low"]) == 4 for p in stats["plates"].values())


# --- CellProfiler LoadData CSVs (the Cell Painting Gallery's layout) ---------------------

CP_SIZE = 72  # the fixture's fields; the records get 64 x 64 (--resize=crop)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    return cp.write_gallery(tmp_path_factory.mktemp("gallery"), plates=2, sites=2,
                            size=CP_SIZE)


def test_load_data_csvs_of_a_gallery_plate_give_five_channel_shards(gallery, tmp_path):
    out = tmp_path / "cp"
    result = run_binary(
        "mcnn_keras.cli.convert_images", "--noprogress", f"--output_dir={out}",
        "--load_data_csv=" + ",".join(p["load_data"] for p in gallery["plates"]),
        "--channels=OrigDNA,OrigER,OrigRNA,OrigAGP,OrigMito", f"--labels_csv={gallery['well']}",
        "--labels_on=Metadata_Plate,Metadata_Well", "--label_column=Metadata_JCP2022",
        "--height=64", "--width=64", "--resize=crop", "--split=plate", "--fold=0",
        "--num_shards=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 unlabelled: counted, not converted" in result.stderr.strip().splitlines()[-1]
    manifest = json.loads((out / "manifest.json").read_text())
    names = sorted(j for j, _ in cp.WELLS.values() if j)
    assert manifest["channels"] == [f"Orig{c}" for c in cp.CHANNELS]
    assert manifest["classes"] == names and manifest["num_classes"] == 3
    assert manifest["image_size"] == [64, 64] and (manifest["height"], manifest["width"]) == (
        64, 64)
    assert manifest["counts"]["unlabelled_rows"] == 4
    assert manifest["resize"]["input_sizes"] == {f"{CP_SIZE}x{CP_SIZE}": 12}
    found = examples(out)
    assert len(found) == 12 and {key[0] for key in found} == {"BR00121331", "BR00121332"}
    for (plate, well, site), (image, label) in found.items():
        assert image.shape == (64, 64, 5) and image.dtype == np.uint8
        assert label == names.index(cp.WELLS[well][0])


def test_cellprofiler_illumination_functions_replace_our_map(gallery, tmp_path):
    plate = gallery["plates"][0]
    o = conversion_options.ImagesOptions(
        output_dir=str(tmp_path / "cp"), load_data_csv=plate["load_data_with_illum"],
        labels_csv=gallery["well"], illum="cellprofiler", channels="DNA,Mito",
        height=CP_SIZE, width=CP_SIZE, split="random", fold="0", num_shards=1)
    manifest = convert_images.convert(o, progress=False)
    assert manifest["channels"] == ["OrigDNA", "OrigMito"]
    stats = json.loads((tmp_path / "cp" / normalization.STATS_JSON).read_text())
    assert stats["illumination"] == normalization.CELLPROFILER
    loaded = normalization.load_statistics(str(tmp_path / "cp"))[plate["plate"]]
    assert np.array_equal(loaded.full_map(), np.ones((CP_SIZE, CP_SIZE, 2), np.float32))
    # The records: (raw / CellProfiler's function) scaled by the plate's percentiles.
    by_key = {(f.well, f.site): f for f in
              conversion_fields_of(plate["load_data_with_illum"], o)}
    for (_, well, site), (image, _) in examples(tmp_path / "cp").items():
        raw = images.read_raw_field(by_key[(well, site)], CP_SIZE, CP_SIZE)
        np.testing.assert_array_equal(image, normalization.to_uint8(
            normalization.normalize(raw, loaded)))


def conversion_fields_of(path, o):
    from mcnn_keras.data.conversion import load_data  # pylint: disable=import-outside-toplevel
    return load_data.read_load_data_csvs([path], o)


def test_ome_zarr_plates_give_the_records_of_the_same_fields_listed_by_load_data(
        gallery, tmp_path):
    pytest.importorskip("zarr")
    pytest.importorskip("ome_zarr")
    import ome_zarr_util  # pylint: disable=import-outside-toplevel
    plates = []
    for plate in gallery["plates"]:  # the same pixels as an OME-Zarr plate (NGFF 0.5)
        wells = {}
        for (well, _), planes in sorted(plate["fields"].items()):
            wells.setdefault(f"{well[0]}/{int(well[1:])}", []).append(
                np.stack([planes[c] for c in cp.CHANNELS]))
        plates.append(ome_zarr_util.write_plate(
            tmp_path / f"{plate['plate']}.zarr", wells, cp.CHANNELS, version="0.5",
            writer="ome-zarr", name=plate["plate"]))
    common = dict(labels_csv=gallery["well"], height=64, width=64, resize="crop",
                  split="random", fold="0", num_shards=1)
    zarr_manifest = convert_images.convert(conversion_options.ImagesOptions(
        output_dir=str(tmp_path / "zarr"), ome_zarr=",".join(plates), **common),
        progress=False)
    convert_images.convert(conversion_options.ImagesOptions(
        output_dir=str(tmp_path / "ld"), load_data_csv=",".join(
            p["load_data"] for p in gallery["plates"]), **common), progress=False)
    assert zarr_manifest["channels"] == list(cp.CHANNELS)
    assert zarr_manifest["counts"]["unlabelled_rows"] == 4
    from_zarr, from_csv = examples(tmp_path / "zarr"), examples(tmp_path / "ld")
    assert len(from_zarr) == len(from_csv) == 12
    for (plate, well, site), (image, label) in from_csv.items():
        other = from_zarr[(plate, well, str(int(site) - 1))]  # NGFF fields count from 0
        np.testing.assert_array_equal(other[0], image)
        assert other[1] == label


@pytest.mark.parametrize("inputs, message", [
    ({"index_csv": "i.csv", "load_data_csv": "l.csv"},
     "--index_csv and --load_data_csv are given"),
    ({}, "none is given"),
])
def test_exactly_one_input(tmp_path, inputs, message):
    o = conversion_options.ImagesOptions(output_dir=str(tmp_path / "out"), **inputs)
    with pytest.raises(ValueError) as error:
        convert_images.convert(o, progress=False)
    assert str(error.value) == ("give exactly one of --index_csv, --load_data_csv and "
                                f"--ome_zarr ({message})")


def test_binary_refuses_both_inputs_in_one_line(gallery, tmp_path):
    assert_one_line_error(run_binary(
        "mcnn_keras.cli.convert_images", f"--index_csv={tmp_path / 'i.csv'}",
        f"--load_data_csv={gallery['plates'][0]['load_data']}",
        f"--output_dir={tmp_path / 'out'}"), "give exactly one of --index_csv, "
        "--load_data_csv and --ome_zarr (--index_csv and --load_data_csv are given)")


def test_eight_bit_pngs_without_a_plate_column_are_one_plate(bbbc021, table, tmp_path):
    plate = [f for f in table if f.plate == table[0].plate]
    eight = {f.row: [(p >> 4).astype(np.uint8) for p in planes(f)] for f in plate}
    png = derived(plate, tmp_path, lambda f: {
        f"{c}.png": eight[f.row][i] for i, c in enumerate(CHANNELS)})
    tif = derived(plate, tmp_path, lambda f: {  # the same values, 16-bit
        f"{c}.tif": eight[f.row][i].astype(np.uint16) for i, c in enumerate(CHANNELS)})
    meta = [m for m in META if m != "plate"]
    png_index = write_index(tmp_path / "png.csv", plate, png, meta=meta)
    tif_index = write_index(tmp_path / "tif.csv", plate, tif, meta=meta)
    raw = images.read_raw_field(fields.read_index_csv(str(png_index))[0], SIZE, SIZE)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, np.stack(eight[plate[0].row], -1))
    manifest = convert_images.convert(options(png_index, tmp_path / "png", bit_depth=8,
                                              split="random", fold="0"), progress=False)
    convert_images.convert(options(tif_index, tmp_path / "tif", split="random", fold="0"),
                           progress=False)
    assert shards(tmp_path / "png") == shards(tmp_path / "tif")  # values, not containers
    assert list(manifest["normalization"]["plates"]) == [""]
    assert {key[0] for key in examples(tmp_path / "png")} == {""}


def test_larger_fields_cropped_back_give_the_same_records(bbbc021, table, reference, tmp_path):
    rng = np.random.default_rng(0)

    def framed(plane):  # 8 px of noise on every side: 144 x 144
        big = rng.integers(0, 4096, (SIZE + 16, SIZE + 16)).astype(np.uint16)
        big[8:8 + SIZE, 8:8 + SIZE] = plane
        return big
    files = derived(table, tmp_path, lambda f: {
        f"{c}.tif": framed(p) for c, p in zip(CHANNELS, planes(f))})
    index = write_index(tmp_path / "index.csv", table, files)
    with pytest.raises(images.ImageError, match="size 144x144, expected 128x128"):
        convert_images.convert(options(index, tmp_path / "error"), progress=False)
    manifest = convert_images.convert(options(index, tmp_path / "out", resize="crop"),
                                      progress=False)
    assert shards(tmp_path / "out") == shards(reference[0])
    labelled = sum(f.labelled for f in table)
    assert manifest["resize"] == {"mode": "crop", "size": [SIZE, SIZE], "fields_resized":
                                  labelled, "input_sizes": {"144x144": labelled}}


def test_resize_crop_pad_and_error_on_one_field(tmp_path):
    image = np.arange(6 * 8, dtype=np.uint16).reshape(6, 8)
    paths = []
    for c in range(3):
        paths.append(str(tmp_path / f"c{c}.tif"))
        tifffile.imwrite(paths[-1], image + c)
    field = FieldOfView(paths=tuple(paths), source="index.csv", row=7)
    cropped = images.read_raw_field(field, 4, 4, resize="crop")
    np.testing.assert_array_equal(cropped[..., 1], image[1:5, 2:6] + 1)
    padded = images.read_raw_field(field, 8, 10, resize="pad")
    np.testing.assert_array_equal(padded[1:7, 1:9, 2], image + 2)
    assert padded.sum() == sum((image + c).sum() for c in range(3))  # the border is zero
    for resize, height, width, message in (("error", 8, 8, "size 6x8, expected 8x8"),
                                           ("crop", 8, 8, "cannot crop"),
                                           ("pad", 4, 10, "cannot pad")):
        with pytest.raises(images.ImageError, match=message) as error:
            images.read_raw_field(field, height, width, resize=resize)
        assert str(error.value).startswith(f"index.csv:7: {paths[0]}: ")


def test_two_and_four_channel_mapping_of_one_field(tmp_path):
    paths = []
    for c in range(4):
        paths.append(str(tmp_path / f"c{c}.png"))
        Image.fromarray(np.full((4, 4), 10 * (c + 1), np.uint8)).save(paths[-1])
    two = images.read_raw_field(FieldOfView(paths=tuple(paths[:2])), 4, 4)
    assert two.dtype == np.uint8 and list(two[0, 0]) == [10, 20, 0]
    four = FieldOfView(paths=tuple(paths), channel_order=(3, -1, 0))
    assert list(images.read_raw_field(four, 4, 4)[0, 0]) == [40, 0, 10]
    assert list(images.read_raw_field(FieldOfView(paths=tuple(paths)), 4, 4)[0, 0]) == [
        10, 20, 30, 40]  # four channels, no order given: all four
    one = images.read_raw_field(FieldOfView(paths=(paths[0],)), 4, 4)  # C = 1 is a screen too
    assert one.shape == (4, 4, 1) and one[0, 0, 0] == 10
    five = FieldOfView(paths=tuple(paths), channel_order=(0, 1, 2, 3, -1))
    assert list(images.read_raw_field(five, 4, 4)[0, 0]) == [10, 20, 30, 40, 0]


# --- the index CSV ------------------------------------------------------------------------

def test_class_names_default_and_given(tmp_path):
    index = tmp_path / "index.csv"
    index.write_text("a,b,label,compound\nx1.tif,y1.tif,zeta,c1\nx2.tif,y2.tif,,c2\n"
                     "x3.tif,y3.tif,alpha,c3\n")
    options = conversion_options.IndexOptions(channel_columns="a,b")
    found = fields.read_index_csv(str(index), options)
    assert [f.label for f in found] == [1, -1, 0]  # sorted labels; empty = unlabelled
    assert found[0].plate == "" and found[2].compound == "c3"
    assert found[0].paths == (str(tmp_path / "x1.tif"), str(tmp_path / "y1.tif"))
    assert found[0].channel_order == (0, 1, -1)
    given = conversion_options.IndexOptions(channel_columns="a,b", class_names="zeta,alpha")
    assert [f.label for f in fields.read_index_csv(str(index), given)] == [0, -1, 1]
    with pytest.raises(fields.FieldError) as error:
        fields.read_index_csv(str(index), conversion_options.IndexOptions(channel_columns="a,b",
                                                              class_names="zeta"))
    assert str(error.value).startswith(f"{index}:4: column 'label': unknown class 'alpha'")
    no_labels = conversion_options.IndexOptions(channel_columns="a,b", label_column="")
    assert not any(f.labelled for f in fields.read_index_csv(str(index), no_labels))
    assert fields.class_names_for(["DMSO", "Eg5 inhibitors"])[1] == fields.MOA_ORDER
    assert tuple(found[0].metadata()) == records.METADATA_KEYS  # the record schema


@pytest.mark.parametrize("content, options, message", [
    ("a,b,label\nx.tif,,DMSO\n", {}, ":2: column 'b': empty path"),
    ("a,label\nx.tif,DMSO\n", {}, ":1: no column 'b' (--channel_columns)"),
    ("a,b\nx.tif,y.tif\n", {}, ":1: no column 'label' (--label_column"),
    ("a,b,label\nx.tif,y.tif,DMSO\n", {"metadata_columns": "plate=Plate"},
     ":1: no column 'Plate' (--metadata_columns)"),
])
def test_bad_index_csv_names_file_row_and_column(tmp_path, content, options, message):
    index = tmp_path / "index.csv"
    index.write_text(content)
    with pytest.raises(fields.FieldError) as error:
        fields.read_index_csv(str(index), conversion_options.IndexOptions(channel_columns="a,b",
                                                              **options))
    assert str(error.value).startswith(f"{index}{message}") and "\n" not in str(error.value)


def test_a_field_listed_twice_is_refused_naming_both_rows(tmp_path):
    # The same files on two rows would be converted twice: one field in the
    # data twice, possibly on both sides of the train/val split.
    index = tmp_path / "index.csv"
    index.write_text("a,b,label\nx.tif,y.tif,DMSO\nz.tif,w.tif,DMSO\n./x.tif,y.tif,DMSO\n")
    with pytest.raises(fields.FieldError) as error:
        fields.read_index_csv(str(index), conversion_options.IndexOptions(channel_columns="a,b"))
    message = str(error.value)
    assert message.startswith(f"{index}:4: ") and f"{index}:2" in message, message
    assert "x.tif" in message and "twice" in message and "\n" not in message
    index.write_text("a,b,label\nx.tif,y.tif,DMSO\ny.tif,x.tif,DMSO\n")  # not the same field
    assert len(fields.read_index_csv(str(index), conversion_options.IndexOptions(
        channel_columns="a,b"))) == 2


@pytest.mark.parametrize("name, write, message", [
    ("float.tif", lambda p: tifffile.imwrite(p, np.zeros((4, 4), np.float32)),
     "float32 pixels (32-bit), expected 8- or 16-bit"),
    ("rgb16.png", lambda p: p.write_bytes(_png16_rgb()), "16-bit RGB PNG"),
    ("cut.png", lambda p: p.write_bytes(_png_bytes(np.random.default_rng(0).integers(
        0, 256, (32, 32), dtype=np.uint8))[:500]), "truncated"),
    ("garbage.png", lambda p: p.write_bytes(b"not a png"), "unreadable or truncated PNG"),
])
def test_bad_image_files_name_file_and_row(tmp_path, name, write, message):
    path = tmp_path / name
    write(path)
    field = FieldOfView(paths=(str(path), str(path)), source="i.csv", row=3)
    with pytest.raises(images.ImageError) as error:
        images.read_raw_field(field, 4, 4)
    assert str(error.value).startswith(f"i.csv:3: {path}: ") and message in str(error.value)


def _png_bytes(array):
    import io  # pylint: disable=import-outside-toplevel
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _png16_rgb():
    """A 48-bit RGB PNG, written by hand (Pillow cannot write one)."""
    import struct  # pylint: disable=import-outside-toplevel
    import zlib  # pylint: disable=import-outside-toplevel

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + b"\x01\x00" * 12 for _ in range(4))  # 4 x 4 x 3 x 16 bit
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# --- the binary: one line naming the culprit -------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing_column", "missing_file", "bit_depth", "size",
                                  "s3_output", "duplicate_row"])
def test_binary_reports_bad_input_in_one_line(bbbc021, table, tmp_path, case):
    files = relative(tmp_path)
    flags = [f"--height={SIZE}", f"--width={SIZE}"]
    if case == "missing_column":
        index = write_index(tmp_path / "index.csv", table, files, columns=["DAPI", "Tub", "Actin"])
        fragments = [f"{index}:1: no column 'Tubulin' (--channel_columns)"]
    else:
        index = write_index(tmp_path / "index.csv", table, lambda f: [
            os.path.relpath(p, tmp_path) for p in f.paths])
        fragments = [f"{index}:2: "]
    if case == "missing_file":
        lines = index.read_text().splitlines()
        lines[2] = lines[2].replace(".tif", "-gone.tif", 1)  # the CSV's row 3
        index.write_text("\n".join(lines) + "\n")
        fragments = [f"{index}:3: ", "-gone.tif: file not found"]
    elif case == "bit_depth":
        flags, fragments = flags + ["--bit_depth=8"], fragments + [
            f"{table[0].paths[0]}: 16-bit pixels, expected 8-bit"]
    elif case == "size":
        flags, fragments = ["--height=256", "--width=256"], fragments + [
            f"{table[0].paths[0]}: size 128x128, expected 256x256"]
    elif case == "duplicate_row":
        lines = index.read_text().splitlines()
        index.write_text("\n".join(lines + [lines[1]]) + "\n")  # row 2 again, last
        fragments = [f"{index}:{len(lines) + 1}: ", f"{index}:2",
                     os.path.basename(table[0].paths[0])]
    elif case == "s3_output":
        # Without tensorflow-io (this TensorFlow): one line before any work.
        fragments = ["s3:// paths need tensorflow-io's file-system plugin"]
    out = "s3://bucket/out" if case == "s3_output" else str(tmp_path / "out")
    assert_one_line_error(run_binary("mcnn_keras.cli.convert_images", f"--index_csv={index}",
                                     f"--output_dir={out}", "--noprogress", *flags),
                          *fragments)
    assert not glob.glob(str(tmp_path / "out" / "*.tfrecord"))
    if case == "duplicate_row":  # refused before any field was read: nothing written
        assert not os.listdir(tmp_path / "out")


def test_urls_are_refused_by_both_conversion_jobs(bbbc021, tmp_path):
    for run in (lambda: bbbc021_convert.convert(bbbc021_options.ConvertOptions(
                    str(bbbc021), "gs://bucket/out")),
                lambda: convert_images.convert(conversion_options.ImagesOptions(
                    str(tmp_path / "index.csv"), "s3://bucket/out"))):
        with pytest.raises(ValueError, match="conversion job reads and writes local files only"):
            run()


# --- resume -------------------------------------------------------------------------------

def test_an_interrupted_conversion_resumes(bbbc021, table, tmp_path):
    index = write_index(tmp_path / "index.csv", table, relative(tmp_path))
    out = tmp_path / "out"
    convert_images.convert(options(index, out, num_shards=3), progress=False)
    written = sorted(glob.glob(str(out / "train-*.tfrecord")))
    mtimes = {p: os.stat(p).st_mtime_ns for p in written}
    content = open(written[1], "rb").read()
    os.remove(written[1])  # as if killed before it was written
    open(atomic.temporary_path(written[1]), "wb").write(b"half")  # what a killed writer leaves
    convert_images.convert(options(index, out, num_shards=3), progress=False)
    assert open(written[1], "rb").read() == content
    assert all(os.stat(p).st_mtime_ns == mtimes[p] for p in (written[0], written[2]))
    assert not glob.glob(str(out / ".*.tmp-*"))
    with pytest.raises(ValueError, match=r"different options \['channel_order'\]"):
        convert_images.convert(options(index, out, num_shards=3, channel_order="2,1,0"),
                               progress=False)


def test_every_option_has_a_flag_and_help_needs_no_tensorflow():
    names, imported_tensorflow = defined_flags("mcnn_keras.cli.convert_images")
    options = {f.name for f in dataclasses.fields(conversion_options.ImagesOptions)}
    assert set(names) == options | {"progress", "staging_dir"} and not imported_tensorflow
    shared = {f.name for f in dataclasses.fields(bbbc021_options.ConvertOptions)}
    assert shared - {"bbbc021_dir"} <= options  # every flag of mcnn-convert-bbbc021's
