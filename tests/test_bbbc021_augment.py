"""Dataset A dihedral variants and dataset B rotated crops."""

import numpy as np

from mcnn_keras.data.conversion import augment


def test_dihedral_variants_square_and_rectangular():
    square = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    variants = augment.dihedral_variants(square)
    assert len(variants) == 8 and all(v.shape == square.shape for v in variants)
    assert len({v.tobytes() for v in variants}) == 8
    np.testing.assert_array_equal(variants[0], square)
    rect = square[:, :6]
    assert [v.shape for v in augment.dihedral_variants(rect)] == [rect.shape] * 4


def test_crop_size_of_the_real_field_is_724():
    assert augment.crop_size(1024, 1280) == 724


def test_right_angles_are_exact_and_match_numpy():
    image = np.random.default_rng(1).random((64, 80, 3)).astype(np.float32)
    side = augment.crop_size(64, 80)
    assert side == 44  # floor(64 / sqrt 2) = 45, less one to sit on whole pixels
    top, left = (64 - side) // 2, (80 - side) // 2
    np.testing.assert_array_equal(augment.rotate_crop(image, 0),
                                  image[top:top + side, left:left + side])
    rotated = np.rot90(image)  # 80 x 64, counterclockwise
    expected = rotated[left:left + side, top:top + side]
    np.testing.assert_allclose(augment.rotate_crop(image, 90), expected, atol=1e-6)


def test_rotated_crops_have_no_empty_corners_on_a_full_size_field():
    image = np.full((1024, 1280, 1), 0.5, np.float32)
    image[0, :] = image[-1, :] = image[:, 0] = image[:, -1] = 1.0  # border marker
    for angle in range(0, 360, 15):
        crop = augment.rotate_crop(image, angle)
        assert crop.shape == (724, 724, 1)
        assert crop.min() >= 0.5 - 1e-6, angle  # only field pixels were sampled
    assert len(augment.rotated_crops(image[:64, :64], step=15)) == 48
