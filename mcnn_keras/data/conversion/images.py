"""Reading the raw pixels of a field of view: TIFF and PNG files, checked.

`read_raw_field(field, height, width, resize)` reads a field's files (one
single-channel 8- or 16-bit TIFF/PNG file per channel, or one multi-channel
file: TIFF pages or samples, a PNG's LA/RGB/RGBA, or an OME-Zarr field's
full-resolution level, `ome_zarr_plate.read_field_image`), divides each file by its
CellProfiler illumination function if the field has them
(`FieldOfView.illum_paths`, `.npy`), maps their channels to the model's C
(`FieldOfView.channel_order`; by default all of them, two channels giving a
zero third one), and centre-crops or zero-pads to height x width when asked
(`resize`: error | crop | pad; never silently).
Pixel values are never rescaled: a field of 16-bit files is uint16, one of
8-bit files uint8 (float32 once divided by illumination functions), and the
converter's per plate x channel percentile scaling makes the container
irrelevant (the same rule at prediction).

Every problem raises `ImageError`, one line naming the file and, when known,
the CSV row that listed the field: missing, unreadable or truncated file,
a bit depth other than 8/16 (or other than the field's `bit_depth`), a
wrong channel count, differing sizes, a size that does not fit, a missing or
malformed illumination function.

Usage:

    raw = read_raw_field(field, 1024, 1280)                # uint16 1024 x 1280 x C
    raw = read_raw_field(field, 1024, 1024, resize="crop") # centre crop
    plane = read_tiff("a_w1.tif", 1024, 1280)              # BBBC021's strict check
"""

import functools
import os

import numpy as np
import tifffile

from mcnn_keras.data.conversion.field import ZERO_CHANNEL

RESIZE_MODES = ("error", "crop", "pad")
_DEPTHS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}
_PNG_MODES = {"L": (np.uint8, 1), "LA": (np.uint8, 2), "RGB": (np.uint8, 3),
              "RGBA": (np.uint8, 4), "I;16": (np.uint16, 1), "I;16B": (np.uint16, 1),
              "I;16L": (np.uint16, 1)}


class ImageError(ValueError):
    """A bad image file; the message is one line naming the file (and CSV row)."""


def _first_line(e):
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _read_tiff_any(path):
    """Any 8/16-bit TIFF -> H x W x C (C = samples, or pages/planes of one series)."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if np.dtype(series.dtype) not in _DEPTHS:
                page = tif.pages[0]
                raise ImageError(f"{path}: {series.dtype} pixels ({page.bitspersample}-bit), "
                                 "expected 8- or 16-bit")
            size = os.path.getsize(path)
            for page in tif.pages:
                end = max((o + n for o, n in zip(page.dataoffsets, page.databytecounts)),
                          default=0)
                if end > size:
                    raise ImageError(f"{path}: truncated ({size} bytes, pixel data ends "
                                     f"at byte {end})")
            image, axes = series.asarray(), series.axes
    except ImageError:
        raise
    except Exception as e:  # tifffile raises many types for corrupt files
        raise ImageError(f"{path}: unreadable TIFF ({_first_line(e)})") from None
    while image.ndim > 3 and 1 in image.shape:  # e.g. ImageJ's T=1, Z=1 axes
        drop = image.shape.index(1)
        image, axes = np.squeeze(image, drop), axes[:drop] + axes[drop + 1:]
    if image.ndim == 2:
        return image[..., None]
    if image.ndim == 3:
        return image if axes.endswith("S") else np.moveaxis(image, 0, -1)
    raise ImageError(f"{path}: a {image.ndim}-D image (axes {axes}, shape {image.shape}), "
                     "expected one 2-D plane per channel")


def _read_png(path):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    try:
        with Image.open(path) as image:
            if image.mode not in _PNG_MODES:
                raise ImageError(f"{path}: PNG mode {image.mode!r}, expected 8- or 16-bit "
                                 "grayscale, LA, RGB or RGBA")
            raw_mode = str(image.tile[0][3] if image.tile else "")
            if ";16" in raw_mode and _PNG_MODES[image.mode][0] == np.uint8:
                # Pillow would silently reduce 16-bit colour to 8 bits.
                raise ImageError(f"{path}: 16-bit {image.mode} PNG; save it as a TIFF "
                                 "(or as single-channel 16-bit PNGs)")
            image.load()
            array = np.asarray(image)
    except ImageError:
        raise
    except Exception as e:  # Pillow: OSError for truncated data, others for garbage
        raise ImageError(f"{path}: unreadable or truncated PNG ({_first_line(e)})") from None
    dtype = _PNG_MODES[image.mode][0]
    array = array.astype(dtype, copy=False)
    return array[..., None] if array.ndim == 2 else array


def read_image(path):
    """One TIFF or PNG file, or one OME-Zarr field (image group) -> H x W x C
    array (uint8 or uint16), or ImageError."""
    from mcnn_keras.data.conversion import ome_zarr_plate  # pylint: disable=import-outside-toplevel
    if ome_zarr_plate.is_zarr_field(path):  # cheap: no zarr import
        try:
            return ome_zarr_plate.read_field_image(path)
        except ome_zarr_plate.OmeZarrError as e:
            raise ImageError(str(e)) from None
    if not os.path.isfile(path):
        raise ImageError(f"{path}: file not found")
    if path.lower().endswith(".png"):
        return _read_png(path)
    return _read_tiff_any(path)


def read_tiff(path, height, width):
    """Reads one single-channel 16-bit TIFF of height x width, or raises ImageError.

    BBBC021's check (its files are all of this kind).
    """
    image = read_image(path)
    if image.dtype != np.uint16:
        raise ImageError(f"{path}: {image.dtype} pixels ({_DEPTHS[image.dtype]}-bit), "
                         "expected 16-bit grayscale")
    if image.shape[-1] != 1:
        raise ImageError(f"{path}: {image.shape[-1]} samples per pixel "
                         f"(shape {image.shape}), expected one channel")
    if image.shape[:2] != (height, width):
        raise ImageError(f"{path}: size {image.shape[0]}x{image.shape[1]}, "
                         f"expected {height}x{width} (--height x --width)")
    return image[..., 0]


def read_field(paths, height, width):
    """Stacks three single-channel 16-bit TIFFs into uint16 H x W x 3 (BBBC021's files)."""
    return np.stack([read_tiff(p, height, width) for p in paths], axis=-1)


def fit_size(image, height, width, resize, where):
    """`image` at height x width: as it is, centre-cropped or zero-padded.

    `resize` = error: any other size is an error; crop: larger sides are
    centre-cropped; pad: smaller sides are zero-padded (centred). A side that
    would need the other operation is an error too. `where` names the file.
    """
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    size = f"size {h}x{w}, expected {height}x{width} (--height x --width"
    if resize == "error":
        raise ImageError(f"{where}: {size}; --resize=crop or --resize=pad to fit)")
    if resize not in RESIZE_MODES:
        raise ValueError(f"--resize={resize!r}: expected one of {list(RESIZE_MODES)}")
    if (resize == "crop" and (h < height or w < width)) or (
            resize == "pad" and (h > height or w > width)):
        verb = "crop" if resize == "crop" else "pad"
        raise ImageError(f"{where}: {size}): --resize={resize} cannot {verb} it to that")
    if resize == "crop":
        top, left = (h - height) // 2, (w - width) // 2
        return image[top:top + height, left:left + width]
    top, left = (height - h) // 2, (width - w) // 2
    pads = ((top, height - h - top), (left, width - w - left)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pads)


def default_channel_order(count):
    """Every channel in order; with two, a zero third one (today's two-stain screens)."""
    return (0, 1, ZERO_CHANNEL) if count == 2 else tuple(range(count))


@functools.lru_cache(maxsize=16)
def _illumination_function(path):
    """A CellProfiler illumination function: a 2-D float32 .npy array, all > 0."""
    if not os.path.isfile(path):
        raise ImageError(f"{path}: file not found (illumination function)")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, OSError, EOFError ...
        raise ImageError(f"{path}: not a .npy illumination function "
                         f"({_first_line(e)})") from None
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ImageError(f"{path}: a {array.dtype} array of shape {array.shape}, expected "
                         "a 2-D float illumination function")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)) or array.min() <= 0:
        raise ImageError(f"{path}: illumination function with values <= 0 or not finite "
                         f"(min {array.min()}); images are divided by it")
    array.setflags(write=False)
    return array


def apply_illumination(image, illum_path, where=""):
    """`image` (H x W x 1) divided by the illumination function in `illum_path`:
    float32 `image / function`, as CellProfiler's CorrectIlluminationApply (Divide)."""
    function = _illumination_function(illum_path)
    if function.shape != image.shape[:2]:
        raise ImageError(f"{where}{illum_path}: illumination function of size "
                         f"{function.shape[0]}x{function.shape[1]}, but the image is "
                         f"{image.shape[0]}x{image.shape[1]}")
    return image.astype(np.float32) / function[..., None]


def _channels(field, prefix):
    """The field's files stacked: H x W x C, one dtype, one size."""
    planes = []
    if field.illum_paths and len(field.illum_paths) != len(field.paths):
        raise ImageError(f"{prefix}{len(field.illum_paths)} illumination functions for "
                         f"{len(field.paths)} image files")
    for index, path in enumerate(field.paths):
        try:
            image = read_image(path)
        except ImageError as e:
            raise ImageError(f"{prefix}{field.column_of(index)}{e}") from None
        if (len(field.paths) > 1 or field.illum_paths) and image.shape[-1] != 1:
            raise ImageError(f"{prefix}{path}: {image.shape[-1]} channels, expected one "
                             "(one single-channel file per channel column)")
        depth = _DEPTHS[image.dtype]
        if field.bit_depth and depth != field.bit_depth:
            raise ImageError(f"{prefix}{path}: {depth}-bit pixels, expected "
                             f"{field.bit_depth}-bit")
        if planes and (image.dtype, image.shape[:2]) != (planes[0].dtype, planes[0].shape[:2]):
            raise ImageError(f"{prefix}{path}: {depth}-bit {image.shape[0]}x{image.shape[1]} "
                             f"differs from {field.paths[0]} "
                             f"({_DEPTHS[planes[0].dtype]}-bit "
                             f"{planes[0].shape[0]}x{planes[0].shape[1]})")
        planes.append(image)
    for index, illum in enumerate(field.illum_paths):
        try:
            planes[index] = apply_illumination(planes[index], illum,
                                               f"{field.paths[index]}: ")
        except ImageError as e:
            column = field.column_of(len(field.paths) + index)
            raise ImageError(f"{prefix}{column}{e}") from None
    return np.concatenate(planes, axis=-1) if len(planes) > 1 else planes[0]


def read_raw_field_and_size(field, height, width, resize="error"):
    """`read_raw_field` plus the files' own (height, width) before any crop/pad."""
    if not field.paths:
        raise ImageError(f"{field.where() or 'field'}: no image files")
    prefix = f"{field.where()}: " if field.where() else ""
    stacked = _channels(field, prefix)
    count = stacked.shape[-1]
    order = field.channel_order or default_channel_order(count)
    missing = [i for i in order if i >= count]
    if missing:
        raise ImageError(f"{prefix}{field.paths[0]}: {count} channels, but the channel "
                         f"order {list(order)} needs channel {missing[0]} (--channel_order)")
    native = stacked.shape[:2]
    stacked = fit_size(stacked, height, width, resize, f"{prefix}{field.paths[0]}")
    zeros = np.zeros(stacked.shape[:2], stacked.dtype)
    image = np.stack([stacked[..., i] if i != ZERO_CHANNEL else zeros for i in order], -1)
    return image, native


def read_raw_field(field, height, width, resize="error"):
    """The field's H x W x C raw pixels (uint16 or uint8; float32 when divided by
    illumination functions), or ImageError."""
    return read_raw_field_and_size(field, height, width, resize)[0]
