"""Micro-batches (microbatch.py): the same update as the whole batch, a slice at a time."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mcnn_keras.train import config
from mcnn_keras.model import microbatch
from mcnn_keras.train import training
from mcnn_keras.model.network import build_model

SIZE, BATCH = 128, 8


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8),
            rng.integers(0, 13, (BATCH,)))


def _train(count, dtype="float32", steps=2, remat="none"):
    """(per-step logs, final weights) of `steps` steps of an M-CNN in `count` micro-batches."""
    keras.utils.set_random_seed(1)
    model = build_model(SIZE, SIZE, dtype_policy=dtype, weight_decay=5e-5, remat=remat)
    training.compile_model(model, config.ScheduleConfig(), 13)
    model.optimizer.learning_rate.assign(0.3)  # steps that move the weights visibly
    microbatch.split_train_step(model, count)
    logs = [model.train_on_batch(*_batch(step), return_dict=True) for step in range(steps)]
    return logs, model.get_weights()


def _relative_diff(a, b):
    return max(float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-12))
               for x, y in zip(a, b))


@pytest.mark.parametrize("count", [2, 4])
def test_micro_batches_give_the_whole_batch_update(count):
    whole_logs, whole = _train(1)
    logs, weights = _train(count)
    assert _relative_diff(weights, whole) < 1e-5
    for got, want in zip(logs, whole_logs):  # loss and metrics over the whole batch
        assert got == pytest.approx(want, rel=1e-5)
    # Both steps moved the weights far more than the tolerance.
    keras.utils.set_random_seed(1)
    start = build_model(SIZE, SIZE).get_weights()
    assert _relative_diff(whole, start) > 1e-2


def test_micro_batches_combine_with_remat():
    _, whole = _train(1)
    _, weights = _train(2, remat="full_res")
    assert _relative_diff(weights, whole) < 1e-5


def test_micro_batches_in_bfloat16_stay_within_bf16_rounding():
    _, whole = _train(1, "mixed_bfloat16", steps=1)
    _, weights = _train(2, "mixed_bfloat16", steps=1)
    assert _relative_diff(weights, whole) < 2e-2


class _LargestBatchSeen(keras.layers.Layer):
    """Identity that remembers the largest batch it was called on in training."""

    def build(self, input_shape):
        self.largest = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                       dtype="int32")

    def call(self, x, training=False):
        if training:
            self.largest.assign(tf.maximum(self.largest, tf.shape(x)[0]))
        return x


@pytest.mark.parametrize("count, largest", [(1, 8), (2, 4), (4, 2)])
def test_each_forward_pass_sees_one_micro_batch(count, largest):
    inputs = keras.Input((4,))
    seen = _LargestBatchSeen()
    model = keras.Model(inputs, keras.layers.Dense(3)(seen(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    microbatch.split_train_step(model, count)
    model.train_on_batch(np.ones((8, 4), "float32"), np.zeros((8, 3), "float32"))
    assert int(seen.largest.numpy()) == largest


def test_count_of_says_how_a_model_trains():
    model = keras.Sequential([keras.layers.Dense(1)])
    assert microbatch.count_of(model) == 1
    assert microbatch.count_of(microbatch.split_train_step(model, 1)) == 1
    assert microbatch.count_of(microbatch.split_train_step(model, 3)) == 3


@pytest.mark.parametrize("count", [0, -1, 1.5])
def test_a_bad_count_is_refused(count):
    with pytest.raises(ValueError, match="--microbatches must be an integer >= 1"):
        microbatch.split_train_step(keras.Sequential(), count)


def test_config_refuses_a_batch_the_micro_batches_do_not_divide():
    cfg = config.TrainConfig.from_flat({"model_dir": "x", "batch_size": 10, "microbatches": 4})
    with pytest.raises(ValueError, match="--batch_size=10 is not divisible by --microbatches=4"):
        config.validate(cfg)
    config.validate(cfg.replace(batch_size=12))
    config.validate(cfg.replace(batch_size=0))  # auto picks a multiple (test_memory)


@pytest.mark.slow
def test_training_trains_in_micro_batches(tmp_path, caplog):
    counts = []

    class Seen(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            counts.append(microbatch.count_of(self.model))

    cfg = config.TrainConfig().replace(
        height=SIZE, width=SIZE, epochs=1, steps_per_epoch=2, val_files="",
        model_dir=str(tmp_path / "run"), tensorboard=False, verbose=0,
        batch_size=4, microbatches=2)
    with caplog.at_level("INFO"):
        summary = training.train(cfg, extra_callbacks=[Seen()])
    assert counts == [2, 2] and summary["global_batch"] == 4
    assert "each batch of 4 in 2 micro-batches of 2" in caplog.text
