"""TFRecord schema round trip and atomic shard writing."""

import numpy as np
import pytest

from mcnn_keras.io import records


def test_round_trip_keeps_pixels_label_and_metadata(scratch_dir):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (128, 160, 3), dtype=np.uint8) for _ in range(5)]
    metadata = {"class_name": "DNA damage", "compound": "cisplatin", "concentration": "10",
                "plate": "Week1_22123", "well": "B02", "site": "3", "replicate": "1"}
    with records.ShardedRecordWriter(str(scratch_dir), "train", 2) as writer:
        for i, image in enumerate(images):
            writer.write(records.encode_example(image, i, metadata))
    paths = sorted(scratch_dir.glob("train-*"))
    assert [p.name for p in paths] == ["train-00000-of-00002.tfrecord",
                                       "train-00001-of-00002.tfrecord"]
    read = [r for p in paths for r in records.read_examples(str(p))]
    assert sorted(label for _, label, _ in read) == list(range(5))
    for image, label, meta in read:
        np.testing.assert_array_equal(image, images[label])
        assert meta == metadata


def test_gzip_shards_are_detected(scratch_dir):
    path = str(scratch_dir / "x.tfrecord")
    records.write_shard(path, [records.encode_example(np.zeros((4, 4, 3), np.uint8), 3)],
                        compression="GZIP")
    assert records.compression_type(path) == "GZIP"
    assert [label for _, label, _ in records.read_examples(path)] == [3]


def test_bad_examples_are_rejected():
    with pytest.raises(ValueError, match="uint8"):
        records.encode_example(np.zeros((4, 4, 3), np.float32), 0)
    with pytest.raises(ValueError, match="unknown metadata"):
        records.encode_example(np.zeros((4, 4, 3), np.uint8), 0, {"colour": "red"})


def test_failed_write_leaves_old_shards_and_no_temp_files(scratch_dir):
    path = scratch_dir / "train-00000-of-00001.tfrecord"
    records.write_shard(str(path), [records.encode_example(np.zeros((4, 4, 3), np.uint8), 1)])
    before = path.read_bytes()

    def failing():
        yield records.encode_example(np.zeros((4, 4, 3), np.uint8), 2)
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        records.write_shard(str(path), failing())
    assert path.read_bytes() == before
    assert [p.name for p in scratch_dir.iterdir()] == [path.name]
    with pytest.raises(RuntimeError):
        with records.ShardedRecordWriter(str(scratch_dir), "val", 2) as writer:
            writer.write(records.encode_example(np.zeros((4, 4, 3), np.uint8), 1))
            raise RuntimeError("interrupted")
    assert [p.name for p in scratch_dir.iterdir()] == [path.name]
