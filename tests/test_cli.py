"""The binaries fail on bad input with one line naming the culprit, exit 1,
and leave what earlier runs wrote untouched."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mcnn_keras import dataset, records
from mcnn_keras.cli import common
from data_util import bars_split_dir

pytestmark = pytest.mark.slow


def run_train(*flags, timeout=300):
    return subprocess.run([sys.executable, "-m", "mcnn_keras.cli.train", "--verbose=2",
                           "--tensorboard=false", *flags],
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in last, last


def tree_digest(directory):
    """Digests of the files a run wrote (flags.json records the latest attempt)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "flags.json"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bars_split_dir(tmp_path_factory.mktemp("bars"), 32, 16, train_shards=2)


def test_error_line_unwraps_tensorflow_assertions(tmp_path):
    path = str(tmp_path / "a.tfrecord")
    records.write_shard(path, [records.encode_example(np.zeros((128, 128, 3), np.uint8), 20)])
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(dataset.eval_dataset([path], 128, 128, 1))
    assert common.error_line(error.value) == f"{path}: record 0: label outside [0, 13)"


def test_bad_inputs_name_their_culprit_and_keep_earlier_outputs(data_dir, tmp_path):
    run = tmp_path / "run"
    good = [f"--train_files={data_dir}/train-*.tfrecord", f"--val_files={data_dir}/val-*.tfrecord",
            f"--model_dir={run}", "--epochs=1", "--batch_size=4", "--steps_per_epoch=8"]
    assert run_train(*good).returncode == 0
    before = tree_digest(run)
    assert any(name.startswith("export/") for name in before)

    assert_one_line_error(run_train(*good, f"--train_files={tmp_path}/missing-*.tfrecord"),
                          "no files match", "missing-*.tfrecord")
    (tmp_path / "notes.tfrecord").write_text("not a record file")
    assert_one_line_error(run_train(*good, f"--val_files={tmp_path}/notes.tfrecord"),
                          "notes.tfrecord: not a TFRecord file")
    assert_one_line_error(run_train(*good, "--height=100", "--width=128"),
                          "height 100", "multiple of 64")

    # Record-level problems surface at the first step of epoch 2 (epoch 1 is done).
    small = str(tmp_path / "small.tfrecord")
    records.write_shard(small, [records.encode_example(np.zeros((64, 128, 3), np.uint8), 1)] * 8)
    assert_one_line_error(run_train(*good, f"--train_files={small}", "--height=128",
                                    "--width=128", "--epochs=2"),
                          "small.tfrecord: record ", "differs from the expected 128 x 128")
    label = str(tmp_path / "label.tfrecord")
    records.write_shard(label, [records.encode_example(np.zeros((128, 128, 3), np.uint8), 99)] * 8)
    assert_one_line_error(run_train(*good, f"--train_files={label}", "--epochs=2"),
                          "label.tfrecord: record ", "label outside [0, 13)")
    assert tree_digest(run) == before  # nothing earlier was lost or rewritten


def test_bad_tf_config_fails_fast(data_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.train", "--strategy=multi_worker_mirrored",
         f"--train_files={data_dir}/train-*.tfrecord", f"--model_dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "TF_CONFIG": "{not json"})
    assert_one_line_error(result, "TF_CONFIG is not valid JSON")
