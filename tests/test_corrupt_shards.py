"""A damaged shard is named, with its record, in one line: training and evaluation.

Real shards damaged five ways (truncated, gzip-truncated, a flipped byte
(CRC), a record that is no tf.train.Example, a record without `label`), read
by the real binaries in a subprocess: exit 1, the last stderr line is
`error: <file>: record <i>: <what>`, no traceback.
"""

import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf

from mcnn_keras.data import dataset
from mcnn_keras.io import records
from data_util import write_indexed_dataset
import multiworker_util as mw

RECORDS = 6  # in the damaged shard, each 128 x 128 x 3


def _examples():
    return [records.encode_example(np.full((128, 128, 3), i, np.uint8), i % 13)
            for i in range(RECORDS)]


def _without_label(serialized):
    example = tf.train.Example.FromString(serialized)
    del example.features.feature["label"]
    return example.SerializeToString()


def _truncate(path, fraction=0.75):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


def _damage(kind, path):
    """Writes a shard damaged as `kind` to `path`; returns the damaged record's index."""
    examples = _examples()
    if kind == "truncated":  # cut inside record 4 (of 6 equal records)
        records.write_shard(str(path), examples)
        _truncate(path)
        return 4
    if kind == "gzip_truncated":
        records.write_shard(str(path), examples, compression="GZIP")
        _truncate(path, 0.5)
        # The cut falls in the record where what still decompresses ends.
        readable = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(path.read_bytes())
        return len(readable) // (len(examples[0]) + 16)
    if kind == "crc":  # one flipped byte inside record 3's image
        records.write_shard(str(path), examples)
        data = bytearray(path.read_bytes())
        data[3 * (len(examples[0]) + 16) + 1000] ^= 0xFF
        path.write_bytes(bytes(data))
        return 3
    if kind == "not_an_example":
        examples[2] = b"not an example \xff\xfe\x00 at all"
        records.write_shard(str(path), examples)
        return 2
    if kind == "no_label":
        examples[4] = _without_label(examples[4])
        records.write_shard(str(path), examples)
        return 4
    raise AssertionError(kind)


KINDS = ["truncated", "gzip_truncated", "crc", "not_an_example", "no_label"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Two good shards and a finished one-epoch run on them (for mcnn-evaluate)."""
    root = tmp_path_factory.mktemp("good")
    (root / "data").mkdir()
    write_indexed_dataset(root / "data", "train", 24, num_shards=2)
    run = root / "run"
    result = subprocess.run(_train(root / "data", run, steps_per_epoch=2),
                            env=mw.worker_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "data", run


def _train(data, model_dir, **flags):
    values = {"train_files": f"{data}/train-*.tfrecord", "val_files": "",
              "model_dir": model_dir, "height": 128, "width": 128, "batch_size": 4,
              "epochs": 1, "steps_per_epoch": 8, "verbose": 0, "tensorboard": False}
    values.update(flags)
    return [sys.executable, "-m", "mcnn_keras.cli.train"] + [
        f"--{'' if v else 'no'}{k}" if isinstance(v, bool) else f"--{k}={v}"
        for k, v in values.items()]


def _damaged_data(good_data, directory, kind):
    """`directory` with the good shards and one damaged one; (bad path, record index)."""
    directory.mkdir()
    for shard in good_data.glob("train-*.tfrecord"):
        shutil.copy(shard, directory)
    bad = directory / "train-damaged.tfrecord"
    return bad, _damage(kind, bad)


def _assert_named(result, bad, index):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines and lines[-1].startswith(f"error: {bad}: record "), result.stderr[-3000:]
    if index is not None:
        assert lines[-1].startswith(f"error: {bad}: record {index}: "), lines[-1]
    assert sum(line.startswith("error:") for line in lines) == 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_training_names_the_damaged_shard_and_record(good, tmp_path, kind):
    bad, index = _damaged_data(good[0], tmp_path / "data", kind)
    result = subprocess.run(_train(tmp_path / "data", tmp_path / "run"), env=mw.worker_env(),
                            capture_output=True, text=True, timeout=300)
    _assert_named(result, bad, index)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_evaluation_names_the_damaged_shard_and_record(good, tmp_path, kind):
    bad, index = _damaged_data(good[0], tmp_path / "data", kind)
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.evaluate", f"--model_dir={good[1]}",
         f"--files={tmp_path}/data/train-*.tfrecord", f"--output_dir={tmp_path}/eval"],
        env=mw.worker_env(), capture_output=True, text=True, timeout=300)
    _assert_named(result, bad, index)


@pytest.mark.parametrize("kind", KINDS)
def test_find_damage_and_counting(tmp_path, kind):
    """In process: `records.find_damage` finds each; counting names a framing one."""
    bad = tmp_path / "train-damaged.tfrecord"
    index = _damage(kind, bad)
    found = records.find_damage(str(bad))
    assert found is not None and (index is None or found[0] == index), found
    if kind in ("truncated", "gzip_truncated", "crc"):
        with pytest.raises(tf.errors.DataLossError, match=f"^{bad}: record {found[0]}: "):
            dataset.count_records([str(bad)])
    good = tmp_path / "good.tfrecord"
    records.write_shard(str(good), _examples())
    assert records.find_damage(str(good)) is None
