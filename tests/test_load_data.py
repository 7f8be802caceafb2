"""CellProfiler LoadData CSVs (the Cell Painting Gallery's layout) -> fields of view.

The fixture (`cell_painting_fixture`) writes plates exactly as the Gallery
keeps them: Phenix-named 16-bit TIFFs, LoadData CSVs with and without
illumination columns, CellProfiler `.npy` illumination functions, JUMP's
well.csv / plate.csv / compound.csv. Bad input is one line naming file, row
and column.
"""

import gzip
import os

import numpy as np
import pytest
import tifffile

import cell_painting_fixture as cp
from mcnn_keras.data.conversion import images, labels, load_data, normalization
from mcnn_keras.data.conversion.options import ImagesOptions

ORIG = [f"Orig{c}" for c in cp.CHANNELS]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    return cp.write_gallery(tmp_path_factory.mktemp("gallery"), plates=2, sites=2, size=32)


def csvs(gallery, kind="load_data"):
    return [plate[kind] for plate in gallery["plates"]]


def opts(**kwargs):
    return ImagesOptions(output_dir="unused", **kwargs)


def one_line(error, *fragments):
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_channels_default_chosen_ordered_and_the_orig_prefix(gallery):
    path = csvs(gallery)[0]
    assert load_data.is_load_data_header(open(path).readline().strip().split(","))
    assert not load_data.is_load_data_header(["DAPI", "Tubulin", "Actin", "label"])
    assert load_data.selected_channels(path) == tuple(ORIG)  # every Orig*, column order
    fields = load_data.read_load_data_csvs([path], opts(channels="Mito,OrigDNA,ER"))
    images_dir = gallery["plates"][0]["images_dir"]
    assert fields[0].paths == tuple(os.path.join(images_dir, cp.phenix_name("A01", 1, c))
                                    for c in ("Mito", "DNA", "ER"))
    assert fields[0].channel_order == (0, 1, 2) and not fields[0].illum_paths
    raw = images.read_raw_field(fields[0], 32, 32)
    expected = gallery["plates"][0]["fields"][("A01", "1")]
    assert raw.dtype == np.uint16
    for i, channel in enumerate(("Mito", "DNA", "ER")):
        np.testing.assert_array_equal(raw[..., i], expected[channel])


def test_without_orig_columns_every_channel_but_illum(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.full((4, 4), 3, np.uint16))
    path = tmp_path / "ld.csv"
    path.write_text("FileName_DNA,PathName_DNA,FileName_IllumDNA,PathName_IllumDNA,"
                    "FileName_Actin,PathName_Actin,Metadata_Well\n"
                    "a.tif,.,i.npy,.,a.tif,.,B02\n")
    assert load_data.selected_channels(str(path)) == ("DNA", "Actin")
    field, = load_data.read_load_data_csvs([str(path)])
    assert field.paths == (str(tmp_path / "a.tif"),) * 2 and field.well == "B02"
    assert field.plate == "" and field.label == -1  # no labels at all: unlabelled


def test_illumination_functions_divide_the_raw_image_exactly(gallery):
    plate = gallery["plates"][1]
    field = load_data.read_load_data_csvs([plate["load_data_with_illum"]], opts(
        illum="cellprofiler", channels="DNA,AGP"))[3]
    assert field.illum_paths == (plate["illum"]["DNA"], plate["illum"]["AGP"])
    raw = images.read_raw_field(field, 32, 32)
    assert raw.dtype == np.float32
    for i, channel in enumerate(("DNA", "AGP")):
        expected = (tifffile.imread(field.paths[i]).astype(np.float32)
                    / np.load(plate["illum"][channel]).astype(np.float32))
        np.testing.assert_array_equal(raw[..., i], expected)  # raw / npy, exactly
    # The default ignores the Illum columns (the job estimates its own map).
    assert not load_data.read_load_data_csvs([plate["load_data_with_illum"]])[0].illum_paths


def test_no_map_of_ours_when_cellprofilers_are_applied():
    rng = np.random.default_rng(0)
    fields = [rng.integers(100, 4000, (32, 32, 5)).astype(np.float32) for _ in range(3)]
    accumulator = normalization.StatisticsAccumulator(32, 32, estimate_map=False)
    for raw in fields:
        accumulator.add(raw)
    stats = accumulator.finish()
    assert np.array_equal(stats.full_map(), np.ones((32, 32, 5), np.float32))
    flat = np.stack([normalization.grid_sample(f) for f in fields]).reshape(-1, 5)
    np.testing.assert_allclose(stats.low, np.percentile(flat, normalization.LOW_PERCENTILE,
                                                        axis=0))


def test_labels_joined_from_jumps_well_csv_and_metadata_kept(gallery):
    fields = load_data.read_load_data_csvs(csvs(gallery), opts(
        labels_csv=gallery["well"], labels_on="Metadata_Plate,Metadata_Well",
        label_column="Metadata_JCP2022"))
    assert len(fields) == 2 * len(cp.WELLS) * 2
    names = sorted(j for j, _ in cp.WELLS.values() if j)
    for field in fields:
        jcp = cp.WELLS[field.well][0]
        assert field.class_name == (jcp or "") and field.label == (
            names.index(jcp) if jcp else -1)
    assert sum(not f.labelled for f in fields) == 4  # A04 on 2 plates x 2 sites
    assert [f.plate for f in fields[:8]] == ["BR00121331"] * 8 and fields[8].plate == \
        "BR00121332"
    assert (fields[1].well, fields[1].site) == ("A01", "2")
    assert dict(fields[0].extra_metadata) == {"Metadata_Source": cp.SOURCE,
                                              "Metadata_Batch": cp.BATCH}
    # Default label column with a JUMP table: Metadata_JCP2022.
    again = load_data.read_load_data_csvs(csvs(gallery), opts(labels_csv=gallery["well"]))
    assert [f.label for f in again] == [f.label for f in fields]


def test_labels_table_gzipped_and_the_csvs_own_column(gallery, tmp_path):
    gz = tmp_path / "well.csv.gz"
    with open(gallery["well"], "rb") as f, gzip.open(gz, "wb") as out:
        out.write(f.read())
    fields = load_data.read_load_data_csvs(csvs(gallery)[:1], opts(labels_csv=str(gz)))
    assert sum(f.labelled for f in fields) == 6
    own = _edited(csvs(gallery)[0], tmp_path, lambda lines: [lines[0] + ",Metadata_moa"] + [
        line + "," + ("x" if i % 2 else "") for i, line in enumerate(lines[1:])], "own.csv")
    found = load_data.read_load_data_csvs([own], opts(label_column="Metadata_moa"))
    assert [f.class_name for f in found[:3]] == ["", "x", ""]


def test_relative_and_absolute_pathnames_agree(tmp_path):
    relative = cp.write_gallery_plate(tmp_path / "r", "BR1", size=16)
    absolute = cp.write_gallery_plate(tmp_path / "a", "BR1", size=16, path_style="absolute")
    with open(absolute["load_data"]) as f:
        assert os.path.isabs(f.read().splitlines()[1].split(",")[1])
    one = load_data.read_load_data_csvs([relative["load_data"]])
    other = load_data.read_load_data_csvs([absolute["load_data"]])
    assert [f.paths for f in one] == [
        tuple(p.replace(str(tmp_path / "a"), str(tmp_path / "r")) for p in f.paths)
        for f in other]


# --- bad input: one line naming file, row and column --------------------------------

def test_s3_pathname_is_one_line(tmp_path):
    plate = cp.write_gallery_plate(tmp_path, "BR1", size=16, path_style="s3")
    with pytest.raises(load_data.LoadDataError) as error:
        load_data.read_load_data_csvs([plate["load_data"]])
    one_line(error, f"{plate['load_data']}:2: column 'PathName_OrigDNA': s3://cellpainting-"
                    "gallery/", "object storage")


def _edited(path, tmp_path, edit, name="load_data.csv"):
    """A copy of LoadData CSV `path` beside it, `edit(lines) -> lines`."""
    target = os.path.join(os.path.dirname(path), name)
    lines = edit(open(path).read().splitlines())
    with open(target, "w") as f:
        f.write("\n".join(lines) + "\n")
    del tmp_path
    return target


def test_missing_column_for_a_requested_channel(gallery, tmp_path):
    path = _edited(csvs(gallery)[0], tmp_path, lambda lines: [
        line.replace("FileName_OrigER", "FileName_Other") for line in lines], "no_er.csv")
    with pytest.raises(load_data.LoadDataError) as error:
        load_data.read_load_data_csvs([path], opts(channels="DNA,ER"))
    one_line(error, f"{path}:1: no column FileName_ER or FileName_OrigER for --channels 'ER'",
             "'OrigDNA'", "'Other'")
    path = _edited(csvs(gallery)[0], tmp_path, lambda lines: [
        line.replace("PathName_OrigRNA", "PathName_X") for line in lines], "no_path.csv")
    with pytest.raises(load_data.LoadDataError) as error:
        load_data.read_load_data_csvs([path])
    one_line(error, f"{path}:1: no column 'PathName_OrigRNA' for channel OrigRNA")
    with pytest.raises(load_data.LoadDataError) as error:  # no Illum columns
        load_data.read_load_data_csvs(csvs(gallery)[:1], opts(illum="cellprofiler"))
    one_line(error, f"{csvs(gallery)[0]}:1: no column 'FileName_IllumDNA'",
             "--illum=cellprofiler")


def test_unknown_channel_lists_what_exists(gallery):
    with pytest.raises(load_data.LoadDataError) as error:
        load_data.read_load_data_csvs(csvs(gallery), opts(channels="DNA,Brightfield"))
    one_line(error, f"{csvs(gallery)[0]}:1: ", "'Brightfield'", str(ORIG))


def test_missing_image_and_illumination_files_name_row_and_column(gallery, tmp_path):
    path = _edited(csvs(gallery, "load_data_with_illum")[0], tmp_path, lambda lines: [
        lines[0], lines[1].replace("-ch3sk1", "-ch9sk1"),
        lines[2].replace("_IllumMito.npy", "_IllumGone.npy")], "gone.csv")
    first, second = load_data.read_load_data_csvs([path], opts(illum="cellprofiler"))
    with pytest.raises(images.ImageError) as error:
        images.read_raw_field(first, 32, 32)
    one_line(error, f"{path}:2: column 'FileName_OrigRNA': ", "-ch9sk1fk1fl1.tiff: file not "
             "found")
    with pytest.raises(images.ImageError) as error:
        images.read_raw_field(second, 32, 32)
    one_line(error, f"{path}:3: column 'FileName_IllumMito': ", "_IllumGone.npy: file not "
             "found")


def test_duplicate_label_keys_name_both_rows(gallery, tmp_path):
    table = tmp_path / "well.csv"
    lines = open(gallery["well"]).read().splitlines()
    table.write_text("\n".join(lines + [lines[1]]) + "\n")  # the same label again: fine
    assert len(labels.read_labels_table(str(table), ["Metadata_Plate", "Metadata_Well"],
                                        "Metadata_JCP2022").labels) == len(lines) - 1
    table.write_text("\n".join(lines + [lines[2].rsplit(",", 1)[0] + ",JCP2022_999"]) + "\n")
    with pytest.raises(labels.LabelsError) as error:
        load_data.read_load_data_csvs(csvs(gallery), opts(labels_csv=str(table)))
    one_line(error, f"{table}:{len(lines) + 1}: column 'Metadata_JCP2022'", "'JCP2022_999'",
             f"{table}:3", "BR00121331")


def test_labels_on_column_absent(gallery, tmp_path):
    with pytest.raises(labels.LabelsError) as error:
        load_data.read_load_data_csvs(csvs(gallery), opts(
            labels_csv=gallery["well"], labels_on="Metadata_Plate,Metadata_Row"))
    one_line(error, f"{gallery['well']}:1: no column 'Metadata_Row' (--labels_on)")
    path = _edited(csvs(gallery)[0], tmp_path, lambda lines: [
        lines[0].replace("Metadata_Well", "Metadata_Position")] + lines[1:], "no_well.csv")
    with pytest.raises(load_data.LoadDataError) as error:
        load_data.read_load_data_csvs([path], opts(labels_csv=gallery["well"]))
    one_line(error, f"{path}:1: no column 'Metadata_Well' (--labels_on")


def test_the_same_field_twice_and_differing_channels(gallery, tmp_path):
    plate = gallery["plates"][0]
    with pytest.raises(load_data.LoadDataError) as error:
        load_data.read_load_data_csvs([plate["load_data"], plate["load_data_with_illum"]])
    one_line(error, f"{plate['load_data_with_illum']}:2: the same field of view as "
                    f"{plate['load_data']}:2", "twice")
    fewer = _edited(csvs(gallery)[1], tmp_path, lambda lines: [
        line.replace("FileName_OrigMito", "FileName_IllumMito") for line in lines],
        "fewer.csv")
    with pytest.raises(load_data.LoadDataError) as error:
        load_data.read_load_data_csvs([csvs(gallery)[0], fewer])
    one_line(error, f"{fewer}:1: channels", "--channels")
