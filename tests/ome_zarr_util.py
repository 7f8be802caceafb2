"""Writing small OME-Zarr HCS plates (OME-NGFF 0.4 and 0.5) for tests.

Two writers, so that the reader (`mcnn_keras.data.conversion.ome_zarr_plate`)
is tested against files it did not write itself:

- writer="ome-zarr": the field's own library, ome-zarr-py (`ome_zarr.writer`:
  write_plate_metadata, write_well_metadata, write_image), a pyramid of 2 levels;
- writer="zarr": plain `zarr` calls and metadata JSON written by hand after the
  spec (NGFF 0.4: Zarr v2, `.zattrs`, "/" chunk keys; 0.5: Zarr v3, metadata
  under the `ome` key of zarr.json, `dimension_names` = the axes), with dataset
  paths other than "0" ("full", "half") so that a reader that guesses "0" fails.

Usage:

    rng = np.random.default_rng(0)
    images = {"A/1": [rng.integers(0, 65535, (3, 64, 64), dtype=np.uint16)] * 2,
              "B/3": [...]}                 # well path -> one C x Y x X array per field
    write_plate(tmp_path / "P1.zarr", images, ("DNA", "ER", "RNA"), version="0.5",
                writer="zarr")              # the 4 fields of P1.zarr
    write_image(tmp_path / "one.zarr", stack, ("DNA",), axes="tczyx")  # one image group

Both need zarr >= 3 (Python >= 3.11); writer="ome-zarr" needs ome-zarr too (the
`test` extra): tests call `pytest.importorskip` first.
"""

import json
import os

import numpy as np

VERSIONS = ("0.4", "0.5")
WRITERS = ("ome-zarr", "zarr")
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def _omero(channel_names, dtype):
    top = int(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1
    return {"channels": [{"label": name, "color": "FFFFFF", "active": True,
                          "window": {"start": 0, "end": top, "min": 0, "max": top}}
                         for name in channel_names]}


def _axes_json(axes):
    return [{"name": a, "type": _AXIS_TYPES[a], **({"unit": "micrometer"}
                                                    if _AXIS_TYPES[a] == "space" else {})}
            for a in axes]


def _half(image, axes):
    """The image at half resolution in y and x (nearest: every second pixel)."""
    index = tuple(slice(None, None, 2) if a in "yx" else slice(None) for a in axes)
    return image[index]


def _open(path, version, mode="w"):
    import zarr  # pylint: disable=import-outside-toplevel
    return zarr.open_group(str(path), mode=mode, zarr_format=2 if version == "0.4" else 3)


def _set_ome(group, version, key, value):
    """`key` metadata as NGFF `version` places it: top-level (0.4) or under `ome` (0.5)."""
    if version == "0.4":
        group.attrs[key] = value
    else:
        ome = dict(group.attrs.get("ome", {"version": version}))
        ome[key] = value
        group.attrs["ome"] = ome


def _write_image_zarr(group, image, channel_names, axes, version):
    datasets, levels = [], [("full", image), ("half", _half(image, axes))]
    for i, (name, data) in enumerate(levels):
        chunks = tuple(min(s, 32) if a in "yx" else 1 for a, s in zip(axes, data.shape))
        if version == "0.4":
            array = group.create_array(name, shape=data.shape, dtype=data.dtype,
                                       chunks=chunks, chunk_key_encoding={"name": "v2",
                                                                          "separator": "/"})
        else:
            array = group.create_array(name, shape=data.shape, dtype=data.dtype,
                                       chunks=chunks, dimension_names=list(axes))
        array[...] = data
        scale = [2.0 ** i if a in "yx" else 1.0 for a in axes]
        datasets.append({"path": name,
                         "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    multiscale = {"name": "image", "axes": _axes_json(axes), "datasets": datasets}
    if version == "0.4":
        multiscale["version"] = "0.4"
    _set_ome(group, version, "multiscales", [multiscale])
    if channel_names is not None:
        _set_ome(group, version, "omero", _omero(channel_names, image.dtype))


def _write_image_ome_zarr(group, image, channel_names, axes, version):
    # pylint: disable=import-outside-toplevel
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.scale import Methods
    from ome_zarr.writer import write_image as ome_write_image
    fmt = FormatV04() if version == "0.4" else FormatV05()
    chunks = tuple(min(s, 32) if a in "yx" else 1 for a, s in zip(axes, image.shape))
    metadata = {"omero": _omero(channel_names, image.dtype)} if channel_names else {}
    ome_write_image(image, group, scale_factors=(2,), method=Methods.NEAREST, fmt=fmt,
                    axes=list(axes), storage_options={"chunks": chunks}, **metadata)


def write_image(path_or_group, image, channel_names=None, axes="cyx", version="0.4",
                writer="zarr"):
    """One multiscale image group (2 levels) holding `image` (axes in `axes` order).

    `channel_names` become the `omero` channel labels (None: no omero metadata).
    `path_or_group`: a path (a new group there) or an open zarr group.
    """
    if version not in VERSIONS or writer not in WRITERS:
        raise ValueError(f"version {version!r} / writer {writer!r}: expected one of "
                         f"{VERSIONS} / {WRITERS}")
    image = np.asarray(image)
    if image.ndim != len(axes):
        raise ValueError(f"image of shape {image.shape} for axes {axes!r}")
    group = path_or_group
    if isinstance(path_or_group, (str, os.PathLike)):
        group = _open(path_or_group, version)
    if writer == "zarr":
        _write_image_zarr(group, image, channel_names, axes, version)
    else:
        _write_image_ome_zarr(group, image, channel_names, axes, version)
    return group


def _rows_columns(well_paths):
    rows, columns = [], []
    for path in well_paths:
        row, column = path.split("/")
        rows += [row] if row not in rows else []
        columns += [column] if column not in columns else []
    columns.sort(key=lambda c: (len(c), c))
    return sorted(rows, key=lambda r: (len(r), r)), columns


def write_plate(path, images_by_well, channel_names, version="0.4", writer="zarr",
                axes="cyx", name=None):
    """An HCS plate at `path`: {well path "A/1": [one array per field]} -> the plate.

    Rows and columns are those of the well paths (sorted); fields are "0", "1", ...;
    every image has axes `axes`. `name` is the plate metadata's `name` (None: none,
    so that a reader takes the folder's). Returns `path` as a string.
    """
    if writer not in WRITERS or version not in VERSIONS:
        raise ValueError(f"version {version!r} / writer {writer!r}: expected one of "
                         f"{VERSIONS} / {WRITERS}")
    path = str(path)
    rows, columns = _rows_columns(images_by_well)
    root = _open(path, version)
    field_count = max(len(fields) for fields in images_by_well.values())
    if writer == "ome-zarr":
        # pylint: disable=import-outside-toplevel
        from ome_zarr.format import FormatV04, FormatV05
        from ome_zarr.writer import write_plate_metadata, write_well_metadata
        fmt = FormatV04() if version == "0.4" else FormatV05()
        write_plate_metadata(root, rows, columns, list(images_by_well), fmt=fmt, name=name,
                             field_count=field_count)
    else:
        wells = [{"path": p, "rowIndex": rows.index(p.split("/")[0]),
                  "columnIndex": columns.index(p.split("/")[1])} for p in images_by_well]
        plate = {"columns": [{"name": c} for c in columns], "rows": [{"name": r} for r in rows],
                 "wells": wells, "field_count": field_count}
        if name is not None:
            plate["name"] = name
        if version == "0.4":
            plate["version"] = "0.4"
        _set_ome(root, version, "plate", plate)
    for well_path, fields in images_by_well.items():
        row, column = well_path.split("/")
        well = root.require_group(row).require_group(column)
        images = [{"path": str(i)} for i in range(len(fields))]
        if writer == "ome-zarr":
            write_well_metadata(well, images, fmt=fmt)
        else:
            _set_ome(well, version, "well", dict(images=images, **(
                {"version": "0.4"} if version == "0.4" else {})))
        for i, image in enumerate(fields):
            write_image(well.require_group(str(i)), image, channel_names, axes, version,
                        writer)
    return path


def metadata_file(group_path, version):
    """The file that holds a group's attributes: .zattrs (0.4) or zarr.json (0.5)."""
    return os.path.join(str(group_path), ".zattrs" if version == "0.4" else "zarr.json")


def edit_metadata(group_path, version, edit):
    """Rewrites a group's NGFF metadata on disk: `edit(metadata dict)` changes it in place.

    The dict is the NGFF namespace: .zattrs (0.4) or zarr.json's attributes["ome"] (0.5).
    For tests that break a plate (a missing key, a wrong label).
    """
    path = metadata_file(group_path, version)
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    ome = document if version == "0.4" else document["attributes"]["ome"]
    edit(ome)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f)
