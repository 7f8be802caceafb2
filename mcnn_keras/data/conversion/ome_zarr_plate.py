"""Fields of view of OME-Zarr HCS plates (OME-NGFF 0.4 on Zarr v2, 0.5 on Zarr v3).

A plate is a Zarr group whose `plate` metadata lists rows, columns and wells
(paths "A/1"); each well group's `well` metadata lists its fields ("0", "1",
...); each field is a multiscale image (`multiscales[0].datasets[0]` is full
resolution; axes such as c,y,x or t,c,z,y,x) with optional `omero` channel
labels. NGFF 0.4 keeps the metadata at the top of `.zattrs`, 0.5 under the
`ome` key of zarr.json's attributes; both are read (verified against the NGFF
0.4/0.5 JSON schemas and files written by ome-zarr-py 0.18 and by hand).

`read_plate` lists a plate's fields in plate order (row, column, field) as
`FieldOfView`s: plate = the metadata's `name` (else the folder name without
.zarr), well = row name + 2-digit column ("A01", CellProfiler's and JUMP's
Metadata_Well), site = the field's path in the well ("0", "1", ...: NGFF's,
not CellProfiler's 1-based site), paths = (the field group's URL,),
channel_order = the requested `omero` labels' indices (None: the image
reader's default, see FieldOfView.channel_order). `read_field_image` reads one
field's full-resolution level as H x W x C uint8/uint16; singleton t/z axes
are squeezed, a z-stack or time series is an error unless `z=` / `t=` picks a
plane (never silently). Chunks absent from the store read as the array's fill
value: Zarr's own rule (writers omit chunks that are all fill value).

Library choice: reading uses `zarr` (3.x reads v2 and v3, local paths and,
with fsspec installed, URLs) and parses the metadata here rather than through
ome-zarr-py's `Reader`/`parse_url`, because those import dask, scikit-image and
scipy and wrap every level in dask arrays (measured on a 96-well x 4-field
plate of 5 x 256 x 256 uint16: import 1.6 s / 108 MB RSS against zarr's 0.6 s /
46 MB, 430-540 ms per field against 105-145 ms here, 312 MB installed against
45 MB), and its Plate node stitches a lazy whole-plate pyramid instead of
listing fields; ome-zarr-py only writes the test plates (the `test` extra).

Every problem raises `OmeZarrError` (a ValueError), one line naming the plate,
well or field path and what is wrong. The image reader wraps it into its own
`ImageError`.

Usage:

    fields = read_plate("/data/P1.zarr", channels=("DNA", "ER", "RNA"))
    fields[0].well, fields[0].site, fields[0].paths   # "A01", "0", ("/data/P1.zarr/A/1/0",)
    plate_channels("/data/P1.zarr")                   # ("DNA", "ER", "RNA", "AGP", "Mito")
    image = read_field_image(fields[0].paths[0])      # uint16 H x W x 5
    is_plate("/data/P1.zarr"), is_zarr_field(fields[0].paths[0])   # True, True
"""

import json
import os
import re

import numpy as np

from mcnn_keras.data.conversion.field import ZERO_CHANNEL, FieldOfView

_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
_PICKABLE = ("t", "z")  # the axes read_field_image can take one plane of
_IMAGE_FILE = re.compile(r"\.(tiff?|png|jpe?g|npy|csv)$", re.IGNORECASE)
ZARR_REQUIREMENT = "zarr>=3.1,<3.2"


class OmeZarrError(ValueError):
    """A bad OME-Zarr plate, well or field; one line naming its path."""


def _first_line(e):
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _zarr(path):
    try:
        import zarr  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise OmeZarrError(f"{path}: reading OME-Zarr needs the zarr package 3.x "
                           f"(Python >= 3.11): pip install '{ZARR_REQUIREMENT}'") from None
    return zarr


def _join(url, *parts):
    return "/".join([str(url).rstrip("/")] + [p.strip("/") for p in parts])


def _open_group(path, what):
    """The zarr group at `path` (a local path or a URL), or OmeZarrError."""
    zarr = _zarr(path)
    try:
        return zarr.open_group(str(path), mode="r")
    except FileNotFoundError:
        raise OmeZarrError(f"{path}: no Zarr group there (no zarr.json, .zgroup or "
                           f".zattrs; expected an OME-Zarr {what})") from None
    except ImportError as e:  # a URL whose fsspec file system is not installed
        raise OmeZarrError(f"{path}: cannot open this URL ({_first_line(e)}); "
                           "URLs need fsspec and its file system, e.g. s3fs") from None
    except Exception as e:  # zarr/fsspec: bad metadata JSON, an array, permissions...
        raise OmeZarrError(f"{path}: cannot open as a Zarr group ({what}): "
                           f"{_first_line(e)}") from None


def _child(group, parent_path, sub, what):
    """group[sub] (a subgroup), or OmeZarrError naming the child's path."""
    path = _join(parent_path, sub)
    try:
        child = group[sub]
    except KeyError:
        raise OmeZarrError(f"{path}: {what} listed in the metadata but absent") from None
    except Exception as e:
        raise OmeZarrError(f"{path}: unreadable {what}: {_first_line(e)}") from None
    if not hasattr(child, "members"):
        raise OmeZarrError(f"{path}: a Zarr array, expected a group ({what})")
    return child


def _ngff(group):
    """The group's NGFF metadata: attributes (0.4) or attributes["ome"] (0.5)."""
    attrs = group.attrs.asdict()
    ome = attrs.get("ome")
    return dict(ome) if isinstance(ome, dict) else attrs


def _require(metadata, key, path, what):
    value = metadata.get(key)
    if not value:
        found = ", ".join(sorted(metadata)) or "none"
        raise OmeZarrError(f"{path}: no '{key}' metadata, not an OME-Zarr {what} "
                           f"(NGFF keys found: {found})")
    return value


def _plate_name(url, plate):
    if plate.get("name"):
        return str(plate["name"])
    base = os.path.basename(str(url).rstrip("/"))
    return base[:-5] if base.lower().endswith(".zarr") else base


def _well_name(row, column):
    """"A01": the row name and the column number in two digits (CellProfiler's)."""
    return f"{row}{int(column):02d}" if column.isdigit() else f"{row}{column}"


def _names(plate, key, url):
    try:
        return [str(item["name"]) for item in plate.get(key) or ()]
    except (TypeError, KeyError):
        raise OmeZarrError(f"{url}: plate '{key}' must be a list of {{\"name\": ...}} "
                           "objects") from None


def _wells(url, plate):
    """[(sort key, well name, well path)] of the plate's wells in plate order."""
    rows, columns = _names(plate, "rows", url), _names(plate, "columns", url)
    wells = []
    for well in _require(plate, "wells", url, "plate"):
        path = well.get("path", "") if isinstance(well, dict) else ""
        parts = str(path).split("/")
        if len(parts) != 2 or not all(parts):
            raise OmeZarrError(f"{url}: well path {path!r} in the plate metadata: "
                               "expected row/column (e.g. \"A/1\")")
        row, column = parts
        if row not in rows or column not in columns:
            axis, name = ("row", row) if row not in rows else ("column", column)
            raise OmeZarrError(f"{_join(url, path)}: {axis} {name!r} is not one of the "
                               f"plate's {axis}s ({', '.join(rows if axis == 'row' else columns)})")
        wells.append(((rows.index(row), columns.index(column)), _well_name(row, column), path))
    wells.sort(key=lambda w: w[0])
    return wells


def _field_paths(well_group, well_url):
    """The field paths the well's metadata lists, in its order."""
    well = _require(_ngff(well_group), "well", well_url, "well")
    images = well.get("images") if isinstance(well, dict) else None
    if not images:
        raise OmeZarrError(f"{well_url}: the well metadata lists no fields ('images')")
    paths = [str(image.get("path", "")) if isinstance(image, dict) else "" for image in images]
    if not all(paths):
        raise OmeZarrError(f"{well_url}: a field in the well metadata has no 'path'")
    return paths


def _multiscale(group, path):
    """multiscales[0] of an image group, checked to list its datasets."""
    multiscales = _require(_ngff(group), "multiscales", path, "image (a field)")
    first = multiscales[0] if isinstance(multiscales, list) else None
    datasets = first.get("datasets") if isinstance(first, dict) else None
    if not datasets or not isinstance(datasets[0], dict) or not datasets[0].get("path"):
        raise OmeZarrError(f"{path}: multiscales[0] lists no datasets (no 'path' of a "
                           "resolution level)")
    return first


def _level0(group, path, multiscale):
    """The full-resolution array (datasets[0]) of an image group."""
    level = str(multiscale["datasets"][0]["path"])
    try:
        array = group[level]
    except KeyError:
        raise OmeZarrError(f"{_join(path, level)}: the full-resolution array listed in "
                           "multiscales is absent") from None
    except Exception as e:
        raise OmeZarrError(f"{_join(path, level)}: unreadable array: {_first_line(e)}") from None
    if not hasattr(array, "dtype"):
        raise OmeZarrError(f"{_join(path, level)}: a Zarr group, expected the "
                           "full-resolution array")
    return array, level


def _axis_names(multiscale, shape, path):
    axes = multiscale.get("axes")
    if axes is None and len(shape) == 5:
        return list("tczyx")  # NGFF 0.1-0.2: no axes metadata, always 5-D
    names = [str(a.get("name", "")) if isinstance(a, dict) else str(a) for a in axes or ()]
    if len(names) != len(shape):
        raise OmeZarrError(f"{path}: multiscales axes {','.join(names) or 'missing'} do not "
                           f"match the {len(shape)}-D full-resolution array (shape {shape})")
    if "y" not in names or "x" not in names:
        raise OmeZarrError(f"{path}: axes {','.join(names)} have no y and x")
    return names


def _labels(group, path, multiscale):
    """The field's channel names: omero labels, else c0, c1, ... (None for a gap)."""
    omero = _ngff(group).get("omero")
    channels = omero.get("channels") if isinstance(omero, dict) else None
    if channels:
        return tuple(str(c.get("label") or f"c{i}") if isinstance(c, dict) else f"c{i}"
                     for i, c in enumerate(channels))
    array, _ = _level0(group, path, multiscale)
    names = _axis_names(multiscale, array.shape, path)
    count = array.shape[names.index("c")] if "c" in names else 1
    return tuple(f"c{i}" for i in range(count))


def field_channels(path):
    """The channel names of one field (image group): omero labels, else c0, c1, ..."""
    group = _open_group(path, "field")
    return _labels(group, path, _multiscale(group, path))


def _plate_fields(url):
    """(plate group, plate name, [(well name, well path, well group, [field paths])])."""
    root = _open_group(url, "plate")
    plate = _require(_ngff(root), "plate", url, "plate")
    if not isinstance(plate, dict):
        raise OmeZarrError(f"{url}: the 'plate' metadata is not a JSON object")
    wells = []
    for _, name, path in _wells(url, plate):
        group = _child(root, url, path, "well")
        wells.append((name, path, group, _field_paths(group, _join(url, path))))
    return root, _plate_name(url, plate), wells


def plate_channels(url):
    """The plate's channel names: its first field's omero labels, else c0, c1, ..."""
    _, _, wells = _plate_fields(url)
    if not wells:
        raise OmeZarrError(f"{url}: the plate metadata lists no wells")
    _, well_path, group, fields = wells[0]
    field_url = _join(url, well_path, fields[0])
    field = _child(group, _join(url, well_path), fields[0], "field")
    return _labels(field, field_url, _multiscale(field, field_url))


def _channel_order(channels, labels, where):
    """Indices of the named channels among `labels` (None = a zero channel)."""
    order = []
    for name in channels:
        if name is None:
            order.append(ZERO_CHANNEL)
            continue
        if labels.count(name) != 1:
            problem = "is not" if name not in labels else "appears twice"
            raise OmeZarrError(f"{where}: channel {name!r} {problem} among the field's "
                               f"channels ({', '.join(labels)})")
        order.append(labels.index(name))
    return tuple(order)


def read_plate(url, channels=None, check_fields=True):
    """Every field of view of the plate at `url`, in plate order (row, column, field).

    `channels`: omero labels of the channels to use, in model order (None entries:
    zero channels); None = the image reader's default for the field. `check_fields`
    reads each field's metadata (multiscales present, labels): channel orders are
    then per field and channels=None needs every field to have the plate's labels;
    False trusts the first field's labels for all (fewer reads on object storage).
    """
    url = str(url).rstrip("/")
    _, plate, wells = _plate_fields(url)
    if not wells:
        raise OmeZarrError(f"{url}: the plate metadata lists no wells")
    fields, plate_labels = [], None
    for name, well_path, group, field_paths in wells:
        for site in field_paths:
            field_url = _join(url, well_path, site)
            labels = plate_labels
            if check_fields or labels is None:
                field = _child(group, _join(url, well_path), site, "field")
                labels = _labels(field, field_url, _multiscale(field, field_url))
                plate_labels = plate_labels or labels
            if channels is None and labels != plate_labels:
                raise OmeZarrError(f"{field_url}: channels {', '.join(labels)} differ from "
                                   f"the plate's first field ({', '.join(plate_labels)}); "
                                   "name the channels to use")
            order = None if channels is None else _channel_order(channels, labels, field_url)
            fields.append(FieldOfView(plate=plate, well=name, site=site, paths=(field_url,),
                                      channel_order=order, source=url))
    return fields


def _plane_index(names, shape, path, picks):
    """The index that keeps c, y, x and takes one plane of every other axis."""
    index = []
    for name, size in zip(names, shape):
        if name in ("c", "y", "x"):
            index.append(slice(None))
            continue
        pick = picks.get(name)
        if pick is None:
            if size != 1:
                how = (f" (project it to one plane, or read_field_image(path, {name}=index))"
                       if name in _PICKABLE else "")
                raise OmeZarrError(f"{path}: axis {name} has {size} planes (axes "
                                   f"{','.join(names)}, shape {shape}), expected one: planes "
                                   f"are not read as channels{how}")
            pick = 0
        elif not 0 <= pick < size:
            raise OmeZarrError(f"{path}: {name}={pick} is outside axis {name} (size {size})")
        index.append(pick)
    return tuple(index)


def read_field_image(path, t=None, z=None):
    """The full-resolution pixels of one field (image group): H x W x C uint8/uint16.

    Axes come from the metadata; t and z must have one plane unless `t=` / `z=`
    picks one (an index), any other extra axis must have size 1.
    """
    path = str(path).rstrip("/")
    group = _open_group(path, "field")
    multiscale = _multiscale(group, path)
    array, level = _level0(group, path, multiscale)
    where = _join(path, level)
    if np.dtype(array.dtype) not in _DTYPES:
        raise OmeZarrError(f"{where}: {array.dtype} pixels, expected uint8 or uint16 "
                           "(8- or 16-bit)")
    names = _axis_names(multiscale, tuple(array.shape), path)
    index = _plane_index(names, tuple(array.shape), where, {"t": t, "z": z})
    try:
        data = np.asarray(array[index])
    except Exception as e:  # a corrupt chunk, a codec that is not installed...
        raise OmeZarrError(f"{where}: unreadable pixels: {_first_line(e)}") from None
    kept = [n for n in names if n in ("c", "y", "x")]
    if "c" not in kept:
        data, kept = data[..., None], kept + ["c"]
    return np.ascontiguousarray(np.transpose(data, [kept.index(a) for a in "yxc"]))


def _local_metadata(path):
    """The NGFF metadata of a local group, read as JSON (None: no group files)."""
    for name in ("zarr.json", ".zattrs"):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            try:
                with open(file, encoding="utf-8") as f:
                    document = json.load(f)
            except (OSError, ValueError):
                return {}
            attrs = document.get("attributes", {}) if name == "zarr.json" else document
            ome = attrs.get("ome") if isinstance(attrs, dict) else None
            return ome if isinstance(ome, dict) else (attrs if isinstance(attrs, dict) else {})
    return None


def is_zarr_field(path):
    """Whether `path` names an OME-Zarr image group (cheap: no zarr import).

    True for a path with a `.zarr` component that is not an image file name
    (e.g. "P1.zarr/A/1/0", "s3://b/P1.zarr/A/1/0"), or a local directory whose
    metadata has multiscales.
    """
    path = str(path).rstrip("/")
    if _IMAGE_FILE.search(path):
        return False
    if any(part.lower().endswith(".zarr") for part in re.split(r"[/\\]", path)):
        return True
    if os.path.isdir(path):
        return "multiscales" in (_local_metadata(path) or {})
    return False


def is_plate(path):
    """Whether `path` is an OME-Zarr HCS plate (a group with `plate` metadata)."""
    path = str(path).rstrip("/")
    if "://" not in path:
        return os.path.isdir(path) and "plate" in (_local_metadata(path) or {})
    try:
        return "plate" in _ngff(_open_group(path, "plate"))
    except OmeZarrError:
        return False
