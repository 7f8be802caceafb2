"""--balance=class on real shards: classes even in the stream, the order a
function of seed, epoch and worker, resume exact."""

import numpy as np
import pytest

from mcnn_keras.data import balance, dataset
from mcnn_keras.io import records
from mcnn_keras.train import config

# Class 0 (think DMSO) is 70 % of the records.
LABELS = [0] * 70 + [1] * 15 + [2] * 15


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("imbalanced")
    paths = []
    for shard in range(2):
        path = str(directory / records.shard_name("train", shard, 2))
        records.write_shard(path, (records.encode_example(
            np.full((128, 128, 3), i % 256, np.uint8), label)
            for i, label in enumerate(LABELS) if i % 2 == shard))
        paths.append(path)
    return paths


def stream_labels(files, balance_mode, start_step=0, epochs=3, seed=5):
    data = config.DataConfig(height=128, width=128, channels=3, num_classes=3,
                             balance=balance_mode, shuffle_buffer=32)
    stream = dataset.Stream(batch_size=10, steps_per_epoch=10, seed=seed, num_epochs=epochs,
                            start_step=start_step)
    batches = dataset.train_dataset(files, data, stream).take(epochs * 10 - start_step)
    return [(images[:, 0, 0, 0].numpy().tolist(), labels.numpy().tolist())
            for images, labels in batches]


def test_counts_and_keep_probabilities(files):
    assert balance.label_counts(files, 3) == (70, 15, 15)
    assert balance.keep_probabilities((70, 15, 15)) == pytest.approx((15 / 70, 1.0, 1.0))
    assert balance.keep_probabilities((4, 0, 2)) == (0.5, 0.0, 1.0)


def test_balanced_stream_sees_every_class_about_equally(files):
    plain = np.bincount(sum((b[1] for b in stream_labels(files, "none")), []), minlength=3)
    even = np.bincount(sum((b[1] for b in stream_labels(files, "class")), []), minlength=3)
    assert plain[0] / plain.sum() > 0.6           # the imbalance as written
    assert even.sum() == 300                      # epochs keep their length
    assert np.all(np.abs(even / 300 - 1 / 3) < 0.1), even


def test_balanced_order_is_deterministic_and_resumes_exactly(files):
    full = stream_labels(files, "class")
    assert stream_labels(files, "class") == full
    assert stream_labels(files, "class", start_step=13) == full[13:]
    assert stream_labels(files, "class", seed=6) != full
