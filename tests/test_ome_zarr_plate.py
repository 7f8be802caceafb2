"""OME-Zarr HCS plates (NGFF 0.4 / Zarr v2 and 0.5 / Zarr v3) -> fields of view.

Plates come from ome-zarr-py's own writer and from plain zarr calls with the
metadata JSON written after the spec (tests/ome_zarr_util.py), never from the
module under test.

    pytest tests/test_ome_zarr_plate.py
"""

import shutil

import numpy as np
import pytest

from mcnn_keras.data.conversion import ome_zarr_plate
from mcnn_keras.data.conversion.field import ZERO_CHANNEL
from mcnn_keras.data.conversion.ome_zarr_plate import OmeZarrError

zarr = pytest.importorskip("zarr", minversion="3",
                           reason="OME-Zarr reading needs zarr 3 (Python >= 3.11)")
import ome_zarr_util  # noqa: E402  (after the skip: it writes with zarr)

CHANNELS = ("DNA", "ER", "RNA")
WELLS = ("B/3", "A/10", "A/2")  # not in plate order: the reader sorts
# ome-zarr 0.18's writer module has a deprecated class as a default argument.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated class Scaler")
LAYOUTS = [(v, w) for v in ome_zarr_util.VERSIONS for w in ome_zarr_util.WRITERS]


def _images(seed=0, shape=(3, 64, 64), dtype=np.uint16, wells=WELLS, fields=2):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    return {w: [rng.integers(0, top, shape, dtype=dtype, endpoint=True)
                for _ in range(fields)] for w in wells}


def _needs(writer):
    if writer == "ome-zarr":
        pytest.importorskip("ome_zarr", reason="writer=ome-zarr needs ome-zarr (test extra)")


@pytest.fixture(scope="module", params=LAYOUTS, ids=[f"{v}-{w}" for v, w in LAYOUTS])
def plate(request, tmp_path_factory):
    version, writer = request.param
    _needs(writer)
    images = _images()
    name = "Plate-7" if writer == "zarr" else None
    path = ome_zarr_util.write_plate(tmp_path_factory.mktemp("p") / "P1.zarr", images,
                                     CHANNELS, version=version, writer=writer, name=name)
    return path, images, name or "P1", version


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def _small_plate(tmp_path, version="0.5", **kwargs):
    """A 2-well x 1-field plate (hand-written layout) for tests that break it."""
    kwargs.setdefault("channel_names", ("DNA", "ER"))
    images = _images(shape=(len(kwargs["channel_names"] or "ab"), 16, 16),
                     wells=("A/1", "A/2"), fields=1)
    return ome_zarr_util.write_plate(tmp_path / "S.zarr", images, version=version,
                                     writer="zarr", **kwargs), images


def test_fields_in_plate_order_with_plate_well_site(plate):
    path, _, name, _ = plate
    fields = ome_zarr_plate.read_plate(path)
    assert [(f.well, f.site) for f in fields] == [
        ("A02", "0"), ("A02", "1"), ("A10", "0"), ("A10", "1"), ("B03", "0"), ("B03", "1")]
    assert {f.plate for f in fields} == {name}
    assert fields[0].paths == (f"{path}/A/2/0",)
    assert all(f.source == path and f.channel_order is None and not f.labelled
               for f in fields)
    assert ome_zarr_plate.plate_channels(path) == CHANNELS
    assert ome_zarr_plate.is_plate(path)
    assert all(ome_zarr_plate.is_zarr_field(f.paths[0]) for f in fields)


def test_pixels_round_trip_exactly_from_the_full_resolution_level(plate):
    path, images, _, _ = plate
    for field in ome_zarr_plate.read_plate(path):
        well = field.paths[0][len(path) + 1:].rsplit("/", 1)[0]
        expected = np.moveaxis(images[well][int(field.site)], 0, -1)  # C,Y,X -> Y,X,C
        image = ome_zarr_plate.read_field_image(field.paths[0])
        assert image.dtype == np.uint16 and image.shape == (64, 64, 3)
        np.testing.assert_array_equal(image, expected)


def test_channels_selected_by_name_reorder(plate):
    path, images, _, _ = plate
    fields = ome_zarr_plate.read_plate(path, channels=("RNA", "DNA", None))
    assert {f.channel_order for f in fields} == {(2, 0, ZERO_CHANNEL)}
    image = ome_zarr_plate.read_field_image(fields[0].paths[0])
    np.testing.assert_array_equal(image[..., [2, 0]],
                                  np.moveaxis(images["A/2"][0][[2, 0]], 0, -1))


def test_unknown_channel_name_lists_the_labels(plate):
    path = plate[0]
    with pytest.raises(OmeZarrError) as error:
        ome_zarr_plate.read_plate(path, channels=("DNA", "Mito"))
    message = _one_line(error)
    assert f"{path}/A/2/0" in message and "'Mito'" in message and "DNA, ER, RNA" in message


def test_without_check_fields_the_first_fields_labels_serve_all(plate):
    path = plate[0]
    fields = ome_zarr_plate.read_plate(path, channels=("ER",), check_fields=False)
    assert len(fields) == 6 and {f.channel_order for f in fields} == {(1,)}


@pytest.mark.parametrize("version", ome_zarr_util.VERSIONS)
def test_plate_name_defaults_to_the_folder_name(tmp_path, version):
    path, _ = _small_plate(tmp_path, version)
    assert {f.plate for f in ome_zarr_plate.read_plate(path)} == {"S"}
    assert ome_zarr_plate.read_plate(path + "/")[0].paths == (f"{path}/A/1/0",)


def test_padded_column_names_give_the_same_well_names(tmp_path):
    images = _images(shape=(2, 8, 8), wells=("B/03", "B/12"), fields=1)
    path = ome_zarr_util.write_plate(tmp_path / "F.zarr", images, ("a", "b"), "0.4")
    assert [f.well for f in ome_zarr_plate.read_plate(path)] == ["B03", "B12"]


@pytest.mark.parametrize("writer", ome_zarr_util.WRITERS)
@pytest.mark.parametrize("version", ome_zarr_util.VERSIONS)
@pytest.mark.parametrize("axes,shape", [("tczyx", (1, 2, 1, 16, 24)), ("czyx", (2, 1, 16, 24)),
                                        ("zyx", (1, 16, 24)), ("yx", (16, 24))])
def test_singleton_t_and_z_are_squeezed(tmp_path, version, writer, axes, shape):
    _needs(writer)
    image = _images(shape=shape, wells=("x",), fields=1)["x"][0]
    names = ("a", "b") if "c" in axes else ("a",)
    ome_zarr_util.write_image(tmp_path / "i.zarr", image, names, axes, version, writer)
    read = ome_zarr_plate.read_field_image(str(tmp_path / "i.zarr"))
    channels = image.reshape((-1, 16, 24)) if "c" in axes else image.reshape((1, 16, 24))
    np.testing.assert_array_equal(read, np.moveaxis(channels, 0, -1))
    assert ome_zarr_plate.field_channels(str(tmp_path / "i.zarr")) == names


@pytest.mark.parametrize("version", ome_zarr_util.VERSIONS)
@pytest.mark.parametrize("axis,shape", [("z", (1, 2, 3, 8, 8)), ("t", (4, 2, 1, 8, 8))])
def test_stacks_are_an_error_unless_a_plane_is_picked(tmp_path, version, axis, shape):
    image = _images(shape=shape, wells=("x",), fields=1)["x"][0]
    path = str(tmp_path / "s.zarr")
    ome_zarr_util.write_image(path, image, ("a", "b"), "tczyx", version)
    with pytest.raises(OmeZarrError) as error:
        ome_zarr_plate.read_field_image(path)
    message = _one_line(error)
    assert f"axis {axis} has {shape['tz'.index(axis) * 2]} planes" in message
    assert path in message and f"read_field_image(path, {axis}=index)" in message
    plane = ome_zarr_plate.read_field_image(path, **{axis: 1})
    expected = image[:, :, 1] if axis == "z" else image[1, :, 0]
    np.testing.assert_array_equal(plane, np.moveaxis(expected.reshape(2, 8, 8), 0, -1))
    with pytest.raises(OmeZarrError, match=f"{axis}=9 is outside axis {axis}"):
        ome_zarr_plate.read_field_image(path, **{axis: 9})


@pytest.mark.parametrize("version", ome_zarr_util.VERSIONS)
def test_uint8_is_kept_and_other_dtypes_are_refused(tmp_path, version):
    image = _images(shape=(2, 8, 8), dtype=np.uint8, wells=("x",), fields=1)["x"][0]
    ome_zarr_util.write_image(tmp_path / "u8.zarr", image, ("a", "b"), "cyx", version)
    read = ome_zarr_plate.read_field_image(str(tmp_path / "u8.zarr"))
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, np.moveaxis(image, 0, -1))
    for dtype in (np.float32, np.int16, np.uint32):
        path = str(tmp_path / f"{np.dtype(dtype).name}.zarr")
        ome_zarr_util.write_image(path, image.astype(dtype), ("a", "b"), "cyx", version)
        with pytest.raises(OmeZarrError) as error:
            ome_zarr_plate.read_field_image(path)
        assert f"{path}/full: {np.dtype(dtype).name} pixels, expected uint8 or uint16" \
            in _one_line(error)


@pytest.mark.parametrize("version", ome_zarr_util.VERSIONS)
def test_without_omero_channels_are_numbered(tmp_path, version):
    path, _ = _small_plate(tmp_path, version, channel_names=None)
    assert ome_zarr_plate.plate_channels(path) == ("c0", "c1")
    assert ome_zarr_plate.read_plate(path, channels=("c1", "c0"))[0].channel_order == (1, 0)


def _raises(call, *parts):
    with pytest.raises(OmeZarrError) as error:
        call()
    message = _one_line(error)
    for part in parts:
        assert part in message, message
    return message


@pytest.mark.parametrize("version", ome_zarr_util.VERSIONS)
def test_broken_plates_name_the_culprit(tmp_path, version):
    path, _ = _small_plate(tmp_path, version)
    read = lambda: ome_zarr_plate.read_plate(path)  # noqa: E731
    edit = ome_zarr_util.edit_metadata

    edit(f"{path}/A/2/0", version, lambda m: m.pop("multiscales"))
    _raises(read, f"{path}/A/2/0: no 'multiscales' metadata", "omero")
    shutil.rmtree(f"{path}/A/2/0")
    _raises(read, f"{path}/A/2/0: field listed in the metadata but absent")
    edit(f"{path}/A/2", version, lambda m: m.pop("well"))
    _raises(read, f"{path}/A/2: no 'well' metadata, not an OME-Zarr well")
    shutil.rmtree(f"{path}/A/2")
    _raises(read, f"{path}/A/2: well listed in the metadata but absent")
    edit(path, version, lambda m: m["plate"]["wells"].__setitem__(1, {"path": "C/1"}))
    _raises(read, f"{path}/C/1: row 'C' is not one of the plate's rows (A)")
    edit(path, version, lambda m: m["plate"]["wells"].__setitem__(1, {"path": "A1"}))
    _raises(read, f"{path}: well path 'A1' in the plate metadata: expected row/column")
    edit(path, version, lambda m: m.pop("plate"))
    _raises(read, f"{path}: no 'plate' metadata, not an OME-Zarr plate")
    assert not ome_zarr_plate.is_plate(path)


@pytest.mark.parametrize("version", ome_zarr_util.VERSIONS)
def test_broken_fields_name_the_culprit(tmp_path, version):
    path, _ = _small_plate(tmp_path, version)
    field = f"{path}/A/1/0"
    read = lambda: ome_zarr_plate.read_field_image(field)  # noqa: E731
    _raises(lambda: ome_zarr_plate.read_plate(field), f"{field}: no 'plate' metadata",
            "multiscales")
    ome_zarr_util.edit_metadata(field, version, lambda m: m["omero"]["channels"][1].update(
        label="DNA"))
    _raises(lambda: ome_zarr_plate.read_plate(path, channels=("DNA",)),
            f"{field}: channel 'DNA' appears twice")
    _raises(lambda: ome_zarr_plate.read_plate(path),
            f"{path}/A/2/0: channels DNA, ER differ from the plate's first field (DNA, DNA)")
    ome_zarr_util.edit_metadata(field, version, lambda m: m["multiscales"][0].update(
        axes=[{"name": "c"}, {"name": "y"}]))
    _raises(read, f"{field}: multiscales axes c,y do not match the 3-D")
    shutil.rmtree(f"{field}/full")
    _raises(read, f"{field}/full: the full-resolution array listed in multiscales is absent")
    _raises(lambda: ome_zarr_plate.read_field_image(f"{path}/A/1/9"),
            f"{path}/A/1/9: no Zarr group there")


def test_detection_is_cheap_and_exact(tmp_path, plate):
    path = plate[0]
    field = f"{path}/A/2/0"
    assert ome_zarr_plate.is_zarr_field(field) and ome_zarr_plate.is_zarr_field(field + "/")
    assert ome_zarr_plate.is_zarr_field("s3://bucket/screen/P1.zarr/A/2/0")
    assert not ome_zarr_plate.is_zarr_field("/data/P1.zarr/export/a_w1.tif")
    assert not ome_zarr_plate.is_zarr_field(str(tmp_path))
    assert not ome_zarr_plate.is_plate(field) and not ome_zarr_plate.is_plate(str(tmp_path))
    assert not ome_zarr_plate.is_plate(str(tmp_path / "absent.zarr"))
    renamed = tmp_path / "image_group"  # no .zarr in the name: its metadata tells
    shutil.copytree(field, renamed)
    assert ome_zarr_plate.is_zarr_field(str(renamed))
    assert ome_zarr_plate.read_field_image(str(renamed)).shape == (64, 64, 3)


def test_urls_go_through_fsspec(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    path, images = _small_plate(tmp_path)
    memory = fsspec.filesystem("memory")
    memory.put(path, "/mcnn-test/S.zarr", recursive=True)
    try:
        url = "memory://mcnn-test/S.zarr"
        assert ome_zarr_plate.is_plate(url)
        fields = ome_zarr_plate.read_plate(url)
        assert fields[1].paths == (f"{url}/A/2/0",) and fields[1].well == "A02"
        np.testing.assert_array_equal(ome_zarr_plate.read_field_image(fields[1].paths[0]),
                                      np.moveaxis(images["A/2"][0], 0, -1))
    finally:
        memory.rm("/mcnn-test", recursive=True)
    _raises(lambda: ome_zarr_plate.read_plate("nosuchprotocol://b/P.zarr"),
            "nosuchprotocol://b/P.zarr: cannot open")
