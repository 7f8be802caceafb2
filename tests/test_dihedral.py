"""The one dihedral augmentation set: a group, the same in numpy and tf, and
the same images whether the converter writes them or training makes them."""

import glob

import numpy as np
import pytest
import tensorflow as tf

from mcnn_keras.data import dihedral
from mcnn_keras.io import records
from mcnn_keras.data.bbbc021 import convert, fixture
from mcnn_keras.data.bbbc021 import options


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("height,width,count", [(6, 10, 4), (10, 6, 4), (7, 7, 8)])
def test_the_set_is_a_group_of_4_or_8_distinct_images(height, width, count):
    image = random_image(height, width)
    assert dihedral.num_variants(height, width) == count
    assert len(dihedral.variants_for(height, width)) == count
    assert dihedral.variants_for(height, width)[0].name == "identity"
    variants = dihedral.all_variants_numpy(image)
    assert all(v.shape == image.shape for v in variants)
    np.testing.assert_array_equal(variants[0], image)
    found = {v.tobytes() for v in variants}
    assert len(found) == count
    # Closed under composition: an augmented image augmented again stays inside.
    for i in range(count):
        for j in range(count):
            twice = dihedral.apply_numpy(dihedral.apply_numpy(image, i), j)
            assert twice.tobytes() in found, (i, j)
    with pytest.raises(ValueError, match="dihedral variant"):
        dihedral.apply_numpy(image, count)


def test_named_elements_are_what_they_say():
    image = random_image(5, 5)
    expected = {"identity": image, "mirror_left_right": np.fliplr(image),
                "mirror_up_down": np.flipud(image), "rotate_180": np.rot90(image, 2),
                "transpose": np.swapaxes(image, 0, 1), "rotate_90": np.rot90(image),
                "rotate_270": np.rot90(image, 3),
                "anti_transpose": np.rot90(np.swapaxes(image, 0, 1), 2)}
    assert [e.name for e in dihedral.ELEMENTS] == list(expected)
    for index, element in enumerate(dihedral.ELEMENTS):
        np.testing.assert_array_equal(dihedral.apply_numpy(image, index),
                                      expected[element.name], err_msg=element.name)


@pytest.mark.parametrize("height,width", [(6, 10), (7, 7)])
def test_numpy_and_tf_agree_element_by_element(height, width):
    image = random_image(height, width, seed=1)
    for index in range(dihedral.num_variants(height, width)):
        expected = dihedral.apply_numpy(image, index)
        for given in (index, tf.constant(index, tf.int32), tf.constant(index, tf.int64)):
            result = dihedral.apply_tf(tf.constant(image), given)
            assert result.shape == image.shape
            np.testing.assert_array_equal(result.numpy(), expected)


def test_apply_tf_keeps_the_static_shape_in_a_graph():
    image = tf.constant(random_image(6, 10))
    ds = tf.data.Dataset.range(4).map(lambda i: dihedral.apply_tf(image, i))
    assert ds.element_spec.shape == (6, 10, 3)
    outputs = [x.numpy() for x in ds]
    assert len({x.tobytes() for x in outputs}) == 4
    with pytest.raises(ValueError, match="static height and width"):
        tf.function(lambda x: dihedral.apply_tf(x, 0)).get_concrete_function(
            tf.TensorSpec([None, None, 3], tf.uint8))


# --- the converter's written variants == the on-the-fly variants ---------------

def records_by_field(output_dir, split="train"):
    """{(plate, well, site): [images in written order]}."""
    by_field = {}
    for path in sorted(glob.glob(f"{output_dir}/{split}-*.tfrecord")):
        for image, _, meta in records.read_examples(path):
            by_field.setdefault((meta["plate"], meta["well"], meta["site"]), []).append(image)
    return by_field


@pytest.fixture(scope="module", params=["non_square_64x128", "square_bundled_128x128"])
def bbbc021_tree(request, tmp_path_factory, testdata_dir):
    """(tree, height, width): a 64 x 128 fixture, or the bundled 128 x 128 one."""
    if request.param.startswith("square"):
        return testdata_dir / "bbbc021", 128, 128
    root = tmp_path_factory.mktemp("bbbc021_rect")
    fixture.write_fixture(str(root), 64, 128, plates=1, sites=1, compounds_per_class=1,
                          seed=5, progress=False)
    return root, 64, 128


def test_written_variants_equal_the_on_the_fly_variants(bbbc021_tree, tmp_path):
    root, height, width = bbbc021_tree
    count = dihedral.num_variants(height, width)
    assert count == (8 if height == width else 4)

    def run(out, dataset):
        return convert.convert(options.ConvertOptions(
            str(root), str(out), height=height, width=width, dataset=dataset,
            num_shards=2, val_fraction=0.25), progress=False)

    manifest = run(tmp_path / "a", "A")
    assert manifest["records_per_field"]["train"] == count
    run(tmp_path / "none", "none")  # the fields as they are: the originals
    written = records_by_field(tmp_path / "a")
    originals = records_by_field(tmp_path / "none")
    assert written and set(written) == set(originals)
    for key, images in written.items():
        (original,) = originals[key]
        assert len(images) == count, key
        np.testing.assert_array_equal(images[0], original)  # identity first
        on_the_fly = [dihedral.apply_tf(tf.constant(original), tf.constant(i)).numpy()
                      for i in range(count)]
        assert sorted(v.tobytes() for v in images) == sorted(v.tobytes() for v in on_the_fly)
        assert len({v.tobytes() for v in images}) == count, key
