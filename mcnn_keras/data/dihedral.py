"""The dihedral augmentation set: one definition for training and conversion.

Both on-the-fly augmentation (`--augment` in training) and the converter's
written dataset A variants (`--dataset=A`) take their orientations from the
table below, in numpy (`apply_numpy`, `all_variants_numpy`) and in TensorFlow
(`apply_tf`). Both paths are derived from the same table, so they cannot drift.

Decision: the set is the symmetry group of the field.

- A non-square H x W field: the rectangle's symmetry group, 4 elements:
  identity, horizontal mirror (left-right), vertical mirror (up-down) and the
  180 degree rotation.
- A square field: the full dihedral group D4, 8 elements: those 4 plus the
  transpose, the 90 and 270 degree rotations and the anti-transpose.

Reason: the paper's list (identity, 90 degree rotation, both mirrors, and the
90 degree rotation of each mirror: 6 images) is not closed under composition.
It misses the 180 and 270 degree rotations, which are orientations a
microscope produces just as well, so it over-weights some orientations and
never shows others. Its 90 degree rotations also change the shape of a
1024 x 1280 field, which a fixed-size network cannot take. A group is closed:
every orientation is equally likely, and augmenting an augmented image stays
inside the set. Consequence: dataset A has 4 records per field (not the
paper's 6) at the real 1024 x 1280, and 8 for square fields.

Each element is (transpose, flip_rows, flip_cols), applied in that fixed
order: first swap the two image axes if `transpose`, then reverse the rows
(up-down) if `flip_rows`, then reverse the columns (left-right) if
`flip_cols`. The 4 shape-preserving elements come first (identity at index
0), so the rectangle's group is a prefix of the square's.

Usage:

    from mcnn_keras.data import dihedral

    n = dihedral.num_variants(1024, 1280)                # 4 (8 if square)
    images = dihedral.all_variants_numpy(field)          # identity first
    image = dihedral.apply_numpy(field, 3)               # 180 degree rotation
    # In a tf.data map, with a statically shaped H x W x C image:
    index = tf.random.uniform([], maxval=n, dtype=tf.int32)
    image = dihedral.apply_tf(image, index)
"""

import collections

import numpy as np

Element = collections.namedtuple("Element", ["name", "transpose", "flip_rows", "flip_cols"])

# The one table. Rotations are counterclockwise as displayed (like np.rot90).
ELEMENTS = (
    # The rectangle's group (any H x W).
    Element("identity", False, False, False),
    Element("mirror_left_right", False, False, True),
    Element("mirror_up_down", False, True, False),
    Element("rotate_180", False, True, True),
    # The rest of D4 (square fields only: these swap height and width).
    Element("transpose", True, False, False),
    Element("rotate_90", True, True, False),
    Element("rotate_270", True, False, True),
    Element("anti_transpose", True, True, True),
)

_RECTANGLE_SIZE = 4


def num_variants(height, width):
    """Size of the symmetry group of an H x W field: 8 if square, else 4."""
    return len(ELEMENTS) if height == width else _RECTANGLE_SIZE


def variants_for(height, width):
    """The group elements for an H x W field (a prefix of `ELEMENTS`)."""
    return ELEMENTS[:num_variants(height, width)]


def _check_index(height, width, index):
    count = num_variants(height, width)
    if not 0 <= index < count:
        raise ValueError(f"dihedral variant {index} of a {height}x{width} image: "
                         f"expected 0..{count - 1}")


def apply_numpy(image, index):
    """Variant `index` (0 .. num_variants - 1) of an H x W x C (or H x W) array.

    Returns a contiguous array of the same shape (the table's square-only
    elements are refused for non-square images).
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    _check_index(height, width, index)
    element = ELEMENTS[index]
    if element.transpose:
        image = np.swapaxes(image, 0, 1)
    if element.flip_rows:
        image = image[::-1]
    if element.flip_cols:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def all_variants_numpy(image):
    """Every variant of an H x W x C array, identity first."""
    height, width = np.shape(image)[:2]
    return [apply_numpy(image, i) for i in range(num_variants(height, width))]


def apply_tf(image, index):
    """Variant `index` of an H x W x C tf image; `index` is a scalar int tensor
    (or Python int) in [0, num_variants(H, W)).

    H and W must be known statically (they choose the group); the result keeps
    the image's static shape. Uses `tf.switch_case` over the same table as
    `apply_numpy`. An out-of-range index runs the identity branch
    (`tf.switch_case`'s default is the last branch, so it is set explicitly).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    image = tf.convert_to_tensor(image)
    if image.shape.rank is None or image.shape.rank < 2:
        raise ValueError(f"apply_tf needs an H x W x C image, got shape {image.shape}")
    height, width = image.shape[0], image.shape[1]
    if height is None or width is None:
        raise ValueError(f"apply_tf needs a static height and width, got {image.shape}")
    if isinstance(index, (int, np.integer)):
        _check_index(height, width, int(index))
    perm = [1, 0] + list(range(2, image.shape.rank))

    def _transpose(x, perm):
        # oneDNN's transpose logs an error-level "supports DT_UINT8 only on
        # platforms with AVX-512" for 8-bit images (even on AVX-512 CPUs) and
        # falls back; going through float32 is exact for 8-bit values and quiet.
        if x.dtype in (tf.uint8, tf.int8):
            return tf.cast(tf.transpose(tf.cast(x, tf.float32), perm), x.dtype)
        return tf.transpose(x, perm)

    def branch(element):
        def run():
            x = image
            if element.transpose:
                x = _transpose(x, perm)
            if element.flip_rows:
                x = tf.reverse(x, [0])
            if element.flip_cols:
                x = tf.reverse(x, [1])
            return x
        return run

    branches = [branch(e) for e in variants_for(height, width)]
    result = tf.switch_case(tf.cast(index, tf.int32), branches, default=branches[0])
    result.set_shape(image.shape)
    return result
