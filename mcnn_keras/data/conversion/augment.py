"""The paper's derived data sets: dihedral variants (A) and rotated crops (B).

Dataset A: the field plus its dihedral variants, which come from
mcnn_keras/data/dihedral.py (the one definition shared with on-the-fly training
augmentation): the symmetry group of the field, 4 images for a non-square
field such as the real 1024 x 1280 (identity, horizontal mirror, vertical
mirror, 180 degree rotation) and 8 for a square one (the dihedral group D4).
Not the paper's 6: see mcnn_keras/data/dihedral.py for why.

Dataset B: square center crops of side about min(H, W) / sqrt(2) (724 for
1024 x 1280, the largest square inside the field at any rotation) of the field
rotated by every multiple of `step` degrees, with and without a horizontal
mirror: 2 x 360 / step distinct images (48 at 15 degrees). For a step that
divides 90 these include the 8-element dihedral group of the square crop (the
rotations by 0, 90, 180 and 270 degrees, with and without the mirror).
Rotation is bilinear interpolation in float; every sampled point lies inside
the field, so no corner is zero-filled.

Usage:

    variants = dihedral_variants(image)            # list of H x W x C arrays
    crops = rotated_crops(float_image, step=15)    # list of 724 x 724 x C arrays
"""

import math

import numpy as np

from mcnn_keras.data import dihedral


def dihedral_variants(image):
    """The dataset A variants of an H x W x C array, identity first: every
    element of the field's symmetry group (`dihedral.all_variants_numpy`)."""
    return dihedral.all_variants_numpy(image)


def crop_size(height, width):
    """Side of the largest square that stays inside the field at any rotation,
    less one if needed so the unrotated crop sits on whole pixels (same parity
    as the height)."""
    size = int(math.floor(min(height, width) / math.sqrt(2) + 1e-9))
    return size - (height - size) % 2


def rotate_crop(image, degrees, size=None):
    """Rotates H x W x C `image` counterclockwise (as displayed, like np.rot90)
    about its centre by `degrees` and returns the size x size centre crop,
    sampled with bilinear interpolation."""
    height, width = image.shape[:2]
    size = crop_size(height, width) if size is None else size
    theta = math.radians(degrees)
    cos, sin = round(math.cos(theta), 12), round(math.sin(theta), 12)
    offsets = np.arange(size) - (size - 1) / 2
    y_out, x_out = np.meshgrid(offsets, offsets, indexing="ij")
    y_src = cos * y_out + sin * x_out + (height - 1) / 2
    x_src = -sin * y_out + cos * x_out + (width - 1) / 2
    # Points lie inside by construction; clipping only absorbs rounding error.
    y_src = np.clip(y_src, 0, height - 1)
    x_src = np.clip(x_src, 0, width - 1)
    y0 = np.minimum(np.floor(y_src).astype(np.int64), height - 2)
    x0 = np.minimum(np.floor(x_src).astype(np.int64), width - 2)
    fy = (y_src - y0)[..., None].astype(np.float32)
    fx = (x_src - x0)[..., None].astype(np.float32)
    image = np.asarray(image, np.float32)
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def rotation_angles(step):
    if step <= 0 or 360 % step:
        raise ValueError(f"rotation step must divide 360, got {step}")
    return list(range(0, 360, step))


def rotated_crops(image, step=15):
    """Dataset B variants of a float H x W x C image: (mirror, angle) for
    mirror in (no, yes) and angle in 0, step, ..., 360 - step. Identity first."""
    crops = []
    for mirrored in (image, image[:, ::-1]):
        for angle in rotation_angles(step):
            crops.append(rotate_crop(mirrored, angle))
    return crops

