"""A run's image size, channels and classes: flags, else the shards' manifest
and records (train/data_shape.py), on real shards."""

import json

import numpy as np
import pytest

from mcnn_keras.data import manifest
from mcnn_keras.io import records
from mcnn_keras.train import config
from mcnn_keras.train.data_shape import resolve_data_shape


def write_shards(directory, height, width, channels, labels, manifest_dict=None):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    examples = [records.encode_example(
        rng.integers(0, 256, (height, width, channels), dtype=np.uint8), label)
        for label in labels]
    records.write_shard(str(directory / "train-00000-of-00001.tfrecord"), examples)
    if manifest_dict is not None:
        (directory / manifest.MANIFEST).write_text(json.dumps(manifest_dict))
    return str(directory / "train-*.tfrecord")


def run_config(train_files, **flags):
    return config.TrainConfig.from_flat({"train_files": train_files, "val_files": "",
                                         "model_dir": "unused", **flags})


CELL_PAINTING = {"image_size": [64, 128], "channels": ["DNA", "ER", "RNA", "AGP", "Mito"],
                 "classes": ["DMSO", "cpd1", "cpd2"]}


def test_without_a_manifest_the_first_record_and_bbbc021_classes(tmp_path):
    files = write_shards(tmp_path / "plain", 64, 128, 4, [0, 1])
    data = resolve_data_shape(run_config(files)).data
    assert (data.height, data.width, data.channels, data.num_classes) == (64, 128, 4, 13)
    assert data.class_name_list()[-1] == "DMSO"


def test_the_manifest_gives_size_channels_and_classes(tmp_path):
    files = write_shards(tmp_path / "cp", 64, 128, 5, [0, 2], CELL_PAINTING)
    data = resolve_data_shape(run_config(files)).data
    assert (data.height, data.width, data.channels) == (64, 128, 5)
    assert data.class_name_list() == ["DMSO", "cpd1", "cpd2"] and data.num_classes == 3
    # The same flags given explicitly agree: nothing changes.
    same = run_config(files, height=64, width=128, channels=5, num_classes=3,
                      class_names="DMSO,cpd1,cpd2")
    assert resolve_data_shape(same).data == data


@pytest.mark.parametrize("flags, message", [
    ({"channels": 3}, "--channels=3 disagrees with .*manifest.json, which says 5"),
    ({"height": 128}, "--height=128 disagrees with .*manifest.json, which says 64"),
    ({"num_classes": 13}, "--num_classes=13 disagrees with .*manifest.json, which says 3"),
    ({"class_names": "DMSO,cpd2,cpd1"},
     "--class_names=DMSO,cpd2,cpd1 disagrees with .*manifest.json, whose classes are "
     "DMSO,cpd1,cpd2"),
])
def test_a_flag_that_disagrees_with_the_manifest_names_both(tmp_path, flags, message):
    files = write_shards(tmp_path / "cp", 64, 128, 5, [0], CELL_PAINTING)
    with pytest.raises(ValueError, match=message):
        resolve_data_shape(run_config(files, **flags))


def test_a_malformed_manifest_is_named(tmp_path):
    files = write_shards(tmp_path / "bad", 64, 64, 3, [0], {"channels": "DNA,ER"})
    with pytest.raises(ValueError, match="manifest.json: 'channels' must be a list"):
        resolve_data_shape(run_config(files))
