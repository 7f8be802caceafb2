"""keras_multiworker_fix: Keras 3 `fit` under MultiWorkerMirroredStrategy.

The slow tests run two real workers on 127.0.0.1. With the fix, `fit` with
validation, then `evaluate`, finish on both and the final weights are bitwise
identical; the same script without the fix fails with upstream bug A or B
(keras-team/keras#20585), which proves the fix is still needed.
"""

import json
import subprocess

import numpy as np
import pytest

from mcnn_keras.train import keras_multiworker_fix as fix
import multiworker_util as mw

# One worker: tiny functional CNN, in-memory data (Keras distributes it), fit
# with validation, evaluate; saves its final weights and logs to argv[2].
WORKER = r"""
import json, os, sys
import numpy as np
import keras, tensorflow as tf
from mcnn_keras.train import keras_multiworker_fix

mode, out_path = sys.argv[1], sys.argv[2]
strategy = tf.distribute.MultiWorkerMirroredStrategy(
    communication_options=tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=60))
only = {"fix": None, "nofix": (), "only_a": ("A",)}[mode]
fixed = keras_multiworker_fix.apply(strategy, only=only)
keras.utils.set_random_seed(1)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 8, 8, 1)).astype("float32")
y = rng.integers(0, 3, size=(64,)).astype("int32")
with strategy.scope():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
train = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)
val = tf.data.Dataset.from_tensor_slices((x[:32], y[:32])).repeat().batch(16)
history = model.fit(train, epochs=2, steps_per_epoch=4, validation_data=val,
                    validation_steps=2, verbose=0)
evaluation = model.evaluate(val, steps=2, verbose=0, return_dict=True)
np.savez(out_path, *[w.numpy() for w in model.trainable_weights])
with open(out_path + ".json", "w") as f:
    json.dump({"fixed": fixed, "history": history.history,
               "evaluate": evaluation}, f)
print("done", fixed)
"""

BUG_MESSAGES = {"A": "with an unsupported type",
                "B": "Invalid reduction dimension 0 for input with 0 dimensions"}


def _run_two_workers(tmp_path, mode):
    configs = mw.tf_configs(mw.free_ports(2))
    outs = [str(tmp_path / f"{mode}-{i}.npz") for i in range(2)]
    results = mw.run_workers(lambda i: mw.python_command(WORKER) + [mode, outs[i]],
                             configs, timeout_s=180)
    return results, outs


@pytest.mark.slow
def test_fit_with_validation_works_and_workers_agree_with_fix(tmp_path):
    results, outs = _run_two_workers(tmp_path, "fix")
    assert all(r.returncode == 0 for r in results), mw.format_results(results)
    weights = [np.load(path) for path in outs]
    assert len(weights[0].files) == 4
    for name in weights[0].files:
        assert weights[0][name].tobytes() == weights[1][name].tobytes(), name
    logs = [json.load(open(path + ".json")) for path in outs]
    assert logs[0]["fixed"] == fix.bugs_for_version()
    # Bug B's fix reduces the logs across workers: metrics are global.
    assert logs[0]["history"] == logs[1]["history"]
    assert logs[0]["evaluate"] == logs[1]["evaluate"]
    assert "val_loss" in logs[0]["history"]


@pytest.mark.slow
@pytest.mark.parametrize("mode, bug", [("nofix", "A"), ("only_a", "B")])
def test_same_script_without_fix_fails_with_upstream_bug(tmp_path, mode, bug):
    """Without the fix bug A hits first; with only A fixed, bug B does."""
    if bug not in fix.bugs_for_version():
        pytest.skip(f"Keras {fix.keras.__version__} predates bug {bug}")
    results, _ = _run_two_workers(tmp_path, mode)
    assert not any(r.timed_out for r in results), mw.format_results(results)
    assert all(r.returncode != 0 for r in results), mw.format_results(results)
    assert any(BUG_MESSAGES[bug] in r.stderr for r in results), mw.format_results(results)


def test_uses_distribute_in_multi_worker_mode_without_import_cycle():
    """No copy of `distribute.in_multi_worker_mode`; distribute does not import the fix."""
    assert not hasattr(fix, "in_multi_worker_mode")
    code = ("import sys, mcnn_keras.train.distribute; "
            "assert 'mcnn_keras.train.keras_multiworker_fix' not in sys.modules; "
            "import mcnn_keras.train.keras_multiworker_fix")
    result = subprocess.run(mw.python_command(code), env=mw.worker_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_version_ranges():
    assert fix.bugs_for_version("3.2.1") == []
    assert fix.bugs_for_version("3.3.0") == ["B"]
    assert fix.bugs_for_version("3.5.0") == ["A", "B"]
    assert fix.bugs_for_version("3.15.1") == ["A", "B"]
    assert fix.keras_version("3.16.0.dev2025") == (3, 16)


def test_apply_is_noop_outside_multi_worker_mode_and_idempotent():
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer
    original = (trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica)
    assert fix.apply(tf.distribute.get_strategy()) == []
    assert fix.is_applied() == []
    try:
        assert fix.apply(None, force=True) == ["A", "B"]
        assert fix.apply(None, force=True) == ["A", "B"]  # no double wrapping
        assert fix.is_applied() == ["A", "B"]
        wrapped = trainer.TensorFlowTrainer._maybe_symbolic_build
        assert getattr(wrapped, fix._MARKER) is original[0]
    finally:
        fix.restore()
    assert (trainer.TensorFlowTrainer._maybe_symbolic_build,
            trainer.reduce_per_replica) == original


def test_single_process_fit_unaffected_by_installed_fix():
    """The wrappers delegate to Keras unless in multi-worker mode."""
    import keras
    fix.apply(None, force=True)
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile("sgd", "mse")
        history = model.fit(np.ones((8, 4)), np.zeros((8, 2)), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    finally:
        fix.restore()
