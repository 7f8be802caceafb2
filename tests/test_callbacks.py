"""The training callbacks, each driven by a real `model.fit`."""

import json

import keras
import numpy as np
import pytest

from mcnn_keras.train.callbacks import host_step
from mcnn_keras.train.callbacks import lr_scheduler
from mcnn_keras.train.callbacks import metrics_logger
from mcnn_keras.train.callbacks import target_accuracy
from mcnn_keras.train.callbacks import throughput
from mcnn_keras.train.run_dir import read_metrics
from mcnn_keras.train.schedule import LinearScalingSchedule


class RecordLearningRate(keras.callbacks.Callback):
    """Records (step, lr) as the optimizer will use them for each update."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        self.seen.append((int(optimizer.iterations.numpy()),
                          float(optimizer.learning_rate.numpy())))


def tiny_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(13)])
    model.compile(keras.optimizers.SGD(0.1),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1")])
    return model


DATA = (np.random.default_rng(0).normal(size=(32, 4)).astype("float32"),
        np.arange(32) % 13)
SCHEDULE = LinearScalingSchedule(base_lr=0.01, global_batch=16, reference_batch_size=4,
                                 total_steps=12, warmup_steps=4, warmup_start_lr=0.001,
                                 end_lr=1e-4)


class RecordHostStep(host_step.HostStepCallback):
    """Pairs the host-counted step with the optimizer's after every batch."""

    def __init__(self):
        super().__init__()
        self.pairs = []

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self.pairs.append((self.step, int(self.model.optimizer.iterations.numpy())))


def test_host_step_matches_the_optimizer_step_from_a_resumed_start():
    model, record = tiny_model(), RecordHostStep()
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(5)
    model.fit(*DATA, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[record])
    assert record.pairs == [(s, s) for s in range(6, 14)]


def test_learning_rate_follows_the_schedule_every_step_and_after_resume():
    model, record = tiny_model(), RecordLearningRate()
    history = model.fit(*DATA, batch_size=8, epochs=3, verbose=0, shuffle=False,
                        callbacks=[lr_scheduler.StepLearningRateScheduler(SCHEDULE), record])
    assert [s for s, _ in record.seen] == list(range(12))
    for step, lr in record.seen:
        assert lr == pytest.approx(SCHEDULE(step), rel=1e-6)
    assert history.history["learning_rate"][-1] == pytest.approx(SCHEDULE(11), rel=1e-6)

    # A resumed run: the optimizer's step counter comes back from a checkpoint.
    resumed, record = tiny_model(), RecordLearningRate()
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.optimizer.iterations.assign(7)
    resumed.fit(*DATA, batch_size=8, epochs=1, steps_per_epoch=3, verbose=0,
                callbacks=[lr_scheduler.StepLearningRateScheduler(SCHEDULE), record])
    assert [s for s, _ in record.seen] == [7, 8, 9]
    for step, lr in record.seen:
        assert lr == pytest.approx(SCHEDULE(step), rel=1e-6)


def test_throughput_reports_images_per_second_to_the_logs():
    class Clock:
        now = 0.0

        def __call__(self):
            Clock.now += 0.5  # every call advances half a second
            return Clock.now
    meter = throughput.Throughput(global_batch_size=8, clock=Clock())
    history = tiny_model().fit(*DATA, batch_size=8, epochs=2, verbose=0,
                               callbacks=[meter])
    rates = history.history["images_per_s"]
    assert len(rates) == 2 and all(r == pytest.approx(16.0) for r in rates)
    assert history.history["wall_s"][1] > history.history["wall_s"][0]


def test_metrics_logger_writes_one_json_line_per_epoch_and_replaces_redone_epochs(scratch_dir):
    path = scratch_dir / "metrics.jsonl"
    model = tiny_model()
    model.fit(*DATA, batch_size=8, epochs=2, verbose=0,
              callbacks=[metrics_logger.MetricsLogger(str(path), extra={"global_batch": 8})])
    lines = read_metrics(path)
    assert [l["epoch"] for l in lines] == [1, 2]
    assert {"loss", "top1", "global_batch"} <= set(lines[0])
    # A resume that redoes epoch 2 and adds 3 keeps one line per epoch.
    model.fit(*DATA, batch_size=8, initial_epoch=1, epochs=3, verbose=0,
              callbacks=[metrics_logger.MetricsLogger(str(path))])
    assert [l["epoch"] for l in read_metrics(path)] == [1, 2, 3]
    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert [p.name for p in scratch_dir.iterdir()] == ["metrics.jsonl"]


def test_stop_at_target_accuracy():
    keras.utils.set_random_seed(0)
    x = np.eye(4, dtype="float32").repeat(8, axis=0) * 3  # 4 separable classes
    y = np.arange(4).repeat(8)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(13)])
    model.compile(keras.optimizers.SGD(0.5),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1")])
    stop = target_accuracy.StopAtTargetAccuracy(0.9, monitor="val_top1")
    history = model.fit(x, y, validation_data=(x, y), epochs=50, verbose=0, callbacks=[stop])
    assert stop.reached_epoch is not None and len(history.history["loss"]) == stop.reached_epoch + 1
    assert history.history["val_top1"][-1] >= 0.9 and len(history.history["loss"]) < 50
    assert stop.time_to_target_s > 0


def test_periodic_checkpoint_saves_every_n_global_steps_after_resume(scratch_dir):
    from mcnn_keras.train.callbacks.checkpoint import PeriodicCheckpoint
    from mcnn_keras.train.checkpoints import Checkpointer
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(4)  # as restored from a checkpoint at step 4
    checkpointer = Checkpointer(model, model.optimizer, str(scratch_dir), max_to_keep=None)
    model.fit(*DATA, batch_size=8, epochs=2, verbose=0, shuffle=False,
              callbacks=[PeriodicCheckpoint(checkpointer, every_n_steps=3,
                                            save_on_sigterm=False)])
    # Global steps 5..12: every third (6, 9, 12) and each epoch's end (8, 12).
    saved = [int(p.rsplit("-", 1)[1]) for p in checkpointer.manager.checkpoints]
    assert saved == [6, 8, 9, 12]


def test_an_accuracy_equal_to_the_target_in_float32_reaches_it():
    stop = target_accuracy.StopAtTargetAccuracy(0.95)
    stop.set_model(tiny_model())
    stop.on_train_begin()
    stop.on_epoch_end(0, {"val_top1": float(np.float32(246 / 260))})  # 0.946
    assert stop.reached_epoch is None
    stop.on_epoch_end(1, {"val_top1": float(np.float32(247 / 260))})  # 0.9499999881
    assert stop.reached_epoch == 1 and stop.model.stop_training


@pytest.mark.parametrize("make, message", [
    (lambda: throughput.Throughput(global_batch_size=0), "global_batch_size"),
    (lambda: throughput.Throughput(global_batch_size=8, clock=3.0), "clock"),
    (lambda: metrics_logger.MetricsLogger(42), "path"),
    (lambda: metrics_logger.MetricsLogger("m.jsonl", extra=[1]), "extra"),
    (lambda: lr_scheduler.StepLearningRateScheduler(0.1), "schedule"),
    (lambda: target_accuracy.StopAtTargetAccuracy(1.5), "target"),
])
def test_callbacks_refuse_bad_arguments_when_made(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_checkpoint_and_divergence_callbacks_refuse_bad_arguments_when_made():
    from mcnn_keras.train.callbacks.checkpoint import PeriodicCheckpoint  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train.callbacks.divergence import StopOnDivergence  # pylint: disable=import-outside-toplevel
    with pytest.raises(ValueError, match="checkpointer"):
        PeriodicCheckpoint(object())
    saver = type("Saver", (), {"save": lambda self, step: None})()
    with pytest.raises(ValueError, match="every_n_steps"):
        PeriodicCheckpoint(saver, every_n_steps=-1)
    with pytest.raises(ValueError, match="agree"):
        PeriodicCheckpoint(saver, agree=True)
    with pytest.raises(ValueError, match="monitor"):
        StopOnDivergence(monitor="")
    assert PeriodicCheckpoint(saver, every_n_steps=5).every_n_steps == 5
