"""The binaries fail on bad input with one line naming the culprit, exit 1,
and leave what earlier runs wrote untouched."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mcnn_keras.data import dataset
from mcnn_keras.io import records
from mcnn_keras.cli import common
from cli_util import assert_one_line_error, run_train, tree_digest
from data_util import bars_split_dir

pytestmark = pytest.mark.slow


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
    assert_one_line_error(run_train(*good, "--height=100", "--width=128"),
                          "height 100", "multiple of 64")
    assert tree_digest(run) == before  # nothing earlier was lost or rewritten

    # Other data is refused on the finished run (flags differ), so these go to
    # fresh directories; record-level problems surface at the first step.
    def fresh(name):
        return [f"--model_dir={tmp_path / name}", "--epochs=1", "--batch_size=4",
                "--steps_per_epoch=8", f"--train_files={data_dir}/train-*.tfrecord"]
    (tmp_path / "notes.tfrecord").write_text("not a record file")
    assert_one_line_error(run_train(*fresh("notes"), f"--val_files={tmp_path}/notes.tfrecord"),
                          "notes.tfrecord: not a TFRecord file")
    assert not (tmp_path / "notes").exists()  # a run that failed at once leaves no dir
    small = str(tmp_path / "small.tfrecord")
    records.write_shard(small, [records.encode_example(np.zeros((64, 128, 3), np.uint8), 1)] * 8)
    assert_one_line_error(run_train(*fresh("small"), f"--train_files={small}", "--height=128",
                                    "--width=128", "--val_files="),
                          "small.tfrecord: record ", "differs from the expected 128 x 128")
    label = str(tmp_path / "label.tfrecord")
    records.write_shard(label, [records.encode_example(np.zeros((128, 128, 3), np.uint8), 99)] * 8)
    assert_one_line_error(run_train(*fresh("label"), f"--train_files={label}", "--val_files="),
                          "label.tfrecord: record ", "label outside [0, 13)")


def test_bad_tf_config_fails_fast(data_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.train", "--strategy=multi_worker_mirrored",
         f"--train_files={data_dir}/train-*.tfrecord", f"--model_dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "TF_CONFIG": "{not json"})
    assert_one_line_error(result, "TF_CONFIG is not valid JSON")
