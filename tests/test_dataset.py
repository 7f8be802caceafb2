"""The tf.data pipeline: file lists, sharding, determinism, resume, bad input."""

import numpy as np
import pytest
import tensorflow as tf

from mcnn_keras.train import config as mcnn_config
from mcnn_keras.data import dataset
from mcnn_keras.io import records
from data_util import write_indexed_dataset
import multiworker_util as mw


def ids(batches):
    return [b[0][:, 0, 0, 0].numpy().tolist() for b in batches]


@pytest.fixture
def files(scratch_dir):
    return write_indexed_dataset(scratch_dir, "train", 48, num_shards=4)


def test_list_files_from_comma_separated_globs(files, scratch_dir):
    pattern = f"{scratch_dir}/train-0000[01]*,{scratch_dir}/train-0000[23]*"
    assert dataset.list_files(pattern) == files
    with pytest.raises(ValueError, match="no files match '.*nothing"):
        dataset.list_files(f"{scratch_dir}/nothing-*.tfrecord")


def test_a_file_that_is_not_a_tfrecord_is_named(scratch_dir):
    bad = scratch_dir / "notes.tfrecord"
    bad.write_text("these are notes, not records")
    with pytest.raises(ValueError, match="notes.tfrecord: not a TFRecord"):
        dataset.list_files(str(bad))
    (scratch_dir / "empty.tfrecord").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.tfrecord: empty"):
        dataset.list_files(str(scratch_dir / "empty.tfrecord"))


def test_records_of_the_wrong_size_or_label_name_file_and_record(scratch_dir):
    path = str(scratch_dir / "mixed.tfrecord")
    ok = records.encode_example(np.zeros((128, 128, 3), np.uint8), 1)
    records.write_shard(path, [ok, records.encode_example(np.zeros((64, 128, 3), np.uint8), 1)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="mixed.tfrecord: record 1.*"
                       "differs from the expected 128 x 128"):
        list(dataset.eval_dataset([path], 128, 128, 4))
    records.write_shard(path, [ok, ok, records.encode_example(np.zeros((128, 128, 3), np.uint8), 13)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"record 2.*label outside \[0, 13\)"):
        list(dataset.eval_dataset([path], 128, 128, 4))
    # A record whose bytes disagree with its own height/width.
    example = tf.train.Example.FromString(ok)
    example.features.feature["image"].bytes_list.value[0] = b"\0" * 100
    records.write_shard(path, [example.SerializeToString()])
    with pytest.raises(tf.errors.InvalidArgumentError, match="record 0.*byte count"):
        list(dataset.eval_dataset([path], 128, 128, 4))


def test_file_sharding_is_disjoint_and_complete(files):
    shards = [dataset.files_for_worker(files, w, 3) for w in range(3)]
    assert shards[0] == files[0::3] and shards[1] == files[1::3]  # file i -> worker i % n
    assert sorted(sum(shards, [])) == files
    assert all(set(a).isdisjoint(b) for i, a in enumerate(shards) for b in shards[i + 1:])
    with pytest.raises(ValueError, match="4 TFRecord files for 5 workers"):
        dataset.files_for_worker(files, 0, 5)
    with pytest.raises(ValueError, match="4 validation TFRecord files for 5 workers: every "
                       "worker needs at least one validation shard"):
        dataset.files_for_worker(files, 0, 5, "validation")


@pytest.mark.slow
def test_fewer_validation_shards_than_workers_are_named_validation(scratch_dir):
    """Two real `mcnn-train` workers, 2 training shards but 1 validation shard."""
    write_indexed_dataset(scratch_dir, "train", 8, num_shards=2)
    write_indexed_dataset(scratch_dir, "val", 4, num_shards=1)
    command = mw.train_command(scratch_dir, scratch_dir / "run",
                               val_files=f"{scratch_dir}/val-*.tfrecord")
    results = mw.run_workers(command, mw.tf_configs(mw.free_ports(2)), timeout_s=120)
    for result in results:
        errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
        assert result.returncode == 1 and len(errors) == 1, mw.format_results(results)
        assert "1 validation TFRecord files for 2 workers" in errors[0], errors[0]


def stream_args(**overrides):
    """(DataConfig, Stream) for a 128 x 128 stream; overrides go where they belong."""
    data = dict(height=128, width=128, channels=3, num_classes=13)
    stream = dict(batch_size=4, steps_per_epoch=5, seed=7, num_epochs=3)
    for key, value in overrides.items():
        (stream if key in stream or key in ("start_step", "worker_index") else data)[key] = value
    return mcnn_config.DataConfig(**data), dataset.Stream(**stream)


def train_stream(files, **overrides):
    return dataset.train_dataset(files, *stream_args(**overrides))


def test_stream_is_deterministic_reshuffled_per_epoch_and_resumable(files):
    full = ids(train_stream(files).take(15))
    assert full == ids(train_stream(files).take(15))
    assert ids(train_stream(files, seed=8).take(5)) != full[:5]
    epoch1, epoch2 = sum(full[:5], []), sum(full[5:10], [])
    assert epoch1 != epoch2 and len(set(epoch1)) == 20  # no repeats inside an epoch
    for start in (3, 5, 12):  # mid-epoch, at a boundary, in a later epoch
        resumed = ids(train_stream(files, start_step=start).take(15 - start))
        assert resumed == full[start:]
    # Past the planned epochs the stream goes on (Keras never runs dry).
    assert len(ids(train_stream(files).take(25))) == 25


def test_stream_is_the_epochs_one_after_the_other(files):
    # The batches are those of `epoch_batches`, epoch after epoch, the same
    # as before it existed, so that old checkpoints resume on the same data.
    # 5 steps per epoch, 3 planned epochs: past them the last one repeats; a
    # run resumed at step 7 starts with the rest of epoch 1. (Global seed 0:
    # the seeds TensorFlow handles differently, as mcnn-train's default.)
    tf.random.set_seed(0)
    for start, epochs in ((0, (0, 1, 2, 3, 3)), (7, (1, 2, 3, 3))):
        data, stream = stream_args(start_step=start, augment=True)
        sequence = dataset.epoch_batches(files, data, stream, epochs[0])
        for epoch in epochs[1:]:
            sequence = sequence.concatenate(dataset.epoch_batches(files, data, stream, epoch))
        wanted = 25 - start
        expected = [x.numpy() for x, _ in sequence.take(wanted)]
        actual = [x.numpy() for x, _ in dataset.train_dataset(files, data, stream).take(wanted)]
        assert len(actual) == len(expected) == wanted
        assert all(np.array_equal(a, e) for a, e in zip(actual, expected)), start


def test_unshuffled_stream_interleaves_files_in_order(files):
    first = ids(train_stream(files, shuffle=False, cycle_length=4).take(1))
    # Record i sits in shard i % 4 at position i // 4; block_length 1 alternates.
    assert first == [[0, 1, 2, 3]]


def test_augmentation_changes_images_deterministically(scratch_dir):
    rng = np.random.default_rng(0)
    with records.ShardedRecordWriter(str(scratch_dir), "aug", 2) as writer:
        for i in range(16):
            writer.write(records.encode_example(
                rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), i % 13))
    files = dataset.list_files(f"{scratch_dir}/aug-*")
    plain = [x.numpy() for x, _ in train_stream(files, steps_per_epoch=4).take(4)]
    aug = [x.numpy() for x, _ in train_stream(
        files, steps_per_epoch=4, augment=True).take(4)]
    again = [x.numpy() for x, _ in train_stream(
        files, steps_per_epoch=4, augment=True).take(4)]
    assert any(not np.array_equal(a, p) for a, p in zip(aug, plain))
    assert all(np.array_equal(a, b) for a, b in zip(aug, again))


def test_eval_dataset_reads_everything_once(files):
    seen = sorted(sum(ids(dataset.eval_dataset(files, 128, 128, 5)), []))
    assert seen == list(range(48))
    assert dataset.count_records(files) == {f: 12 for f in files}
    assert records.image_shape(files[0]) == (128, 128, 3)
