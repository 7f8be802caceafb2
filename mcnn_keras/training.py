"""Trains the M-CNN: data -> model -> schedule -> distribute -> fit -> export.

`train(TrainConfig(...))` is what the `mcnn-train` binary runs; it reads top
to bottom. Under any strategy (one process, or many workers configured by
TF_CONFIG) it:

1. lists and shards the TFRecord files (file i -> worker i % n) and works out
   the steps per epoch (equal on every worker);
2. builds and compiles the model in the strategy scope: Nesterov SGD, softmax
   cross-entropy with label smoothing, L2 weight decay, top-1/top-5;
3. restores the chief's latest checkpoint (model, optimizer, step) and resumes
   the deterministic data stream at exactly that step;
4. fits with the callbacks: learning rate per step (linear scaling rule, warmup,
   polynomial decay), images/s, checkpoints every N steps and on SIGTERM,
   stop-at-target-accuracy, metrics.jsonl, TensorBoard;
5. on the chief, writes the SavedModel to `<model_dir>/export/`, the training
   curves PNG and `summary.json`. Other workers write to scratch space that
   is deleted at the end.

Usage:

    from mcnn_keras import training
    summary = training.train(training.TrainConfig(
        train_files="data/train-*.tfrecord", val_files="data/val-*.tfrecord",
        model_dir="runs/demo", height=128, width=128, epochs=5))
"""

import dataclasses
import math
import os

import keras
import tensorflow as tf

from mcnn_keras import atomic, callbacks, dataset, distribute, export, factored_dense, plots
from mcnn_keras import optimizer as mcnn_optimizer
from mcnn_keras.classes import MOA_CLASSES
from mcnn_keras.model import DENSE_UNITS, build_model, flat_features
from mcnn_keras.schedule import LinearScalingSchedule


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; the `mcnn-train` flags map onto it."""

    train_files: str
    model_dir: str
    val_files: str = ""
    height: int = 128
    width: int = 128
    num_classes: int = 13
    batch_size: int = 8  # per replica
    epochs: int = 10
    steps_per_epoch: int = 0  # 0: one pass over the smallest worker's shards
    validation_steps: int = 0  # 0: one pass over the validation shards
    # Learning rate (the paper's recipe).
    base_lr: float = 0.001
    reference_batch_size: int = 0  # 0: the per-replica batch (k workers -> k x base)
    max_lr: float = 0.032
    warmup_start_lr: float = 0.001
    warmup_epochs: float = 5.0
    end_lr: float = 1e-4
    decay_power: float = 1.0
    momentum: float = 0.9
    nesterov: bool = True
    label_smoothing: float = 0.1
    weight_decay: float = 5e-5
    # Input pipeline.
    shuffle: bool = True
    shuffle_buffer: int = 256
    cycle_length: int = 16
    augment: bool = False
    # Runtime.
    dtype: str = "float32"  # or "mixed_bfloat16"
    strategy: str = "default"
    collective_implementation: str = "AUTO"
    collective_timeout_s: float = 600.0  # a dead or missing peer fails, never hangs
    dense_gradient: str = "auto"  # "factors", "allreduce": see factored_dense.py
    target_accuracy: float = 0.0
    seed: int = 0
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 3
    tensorboard: bool = True
    verbose: int = 1
    # For checking multi-worker runs: every worker writes its final trainable
    # weights here ("{worker}" -> worker index; a path outside model_dir).
    final_weights_npz: str = ""
    class_names: tuple = MOA_CLASSES


def sparse_smoothed_crossentropy(num_classes, label_smoothing):
    """Softmax cross-entropy on integer labels with label smoothing."""
    def loss(labels, logits):
        labels = keras.ops.cast(keras.ops.reshape(labels, (-1,)), "int32")
        one_hot = keras.ops.one_hot(labels, num_classes)
        return keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=label_smoothing)
    loss.__name__ = "smoothed_crossentropy"
    return loss


def compile_model(model, cfg):
    """Compiles with the original recipe's optimizer, loss and metrics."""
    optimizer = mcnn_optimizer.SGD(learning_rate=cfg.warmup_start_lr,
                                   momentum=cfg.momentum, nesterov=cfg.nesterov)
    model.compile(
        optimizer=optimizer,
        loss=sparse_smoothed_crossentropy(cfg.num_classes, cfg.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1"),
                 keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")],
        jit_compile=False)
    optimizer.build(model.trainable_variables)  # so a checkpoint can restore into it
    return optimizer


def _steps(files_per_worker, count, batch_size, rounding):
    counts = [sum(count[f] for f in files) for files in files_per_worker]
    steps = min(rounding(n / batch_size) for n in counts)
    return steps, counts


def plan_steps(cfg, train_files, val_files, num_workers):
    """Steps per epoch and validation steps, identical on every worker."""
    needed = [f for f in train_files if not cfg.steps_per_epoch]
    needed += [f for f in val_files if not cfg.validation_steps]
    count = dataset.count_records(needed) if needed else {}
    shards = lambda files: [dataset.files_for_worker(files, w, num_workers)
                            for w in range(num_workers)]
    steps_per_epoch = cfg.steps_per_epoch
    if not steps_per_epoch:
        steps_per_epoch, counts = _steps(shards(train_files), count, cfg.batch_size,
                                         math.floor)
        if steps_per_epoch < 1:
            raise ValueError(f"too few training records for one batch of "
                             f"{cfg.batch_size} per worker (records per worker: {counts})")
    validation_steps = cfg.validation_steps
    if val_files and not validation_steps:
        validation_steps, _ = _steps(shards(val_files), count, cfg.batch_size, math.ceil)
    return steps_per_epoch, validation_steps


def train(cfg):
    """Runs training as configured; returns the summary dict (also in summary.json)."""
    strategy = distribute.make_strategy(cfg.strategy, cfg.collective_implementation,
                                        cfg.collective_timeout_s)
    task = distribute.task_info(strategy)
    keras.utils.set_random_seed(cfg.seed)
    write_dir = distribute.writer_dir(cfg.model_dir, task)  # scratch on non-chiefs
    os.makedirs(write_dir, exist_ok=True)

    # 1. Data.
    train_files = dataset.list_files(cfg.train_files)
    val_files = dataset.list_files(cfg.val_files) if cfg.val_files else []
    for files in (train_files, val_files):
        if files:
            dataset.files_for_worker(files, task.num_workers - 1, task.num_workers)
    steps_per_epoch, validation_steps = plan_steps(cfg, train_files, val_files,
                                                   task.num_workers)
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    print(f"worker {task.worker_index}/{task.num_workers}: {len(train_files)} train shards, "
          f"per-replica batch {cfg.batch_size}, global batch {global_batch}, "
          f"{steps_per_epoch} steps/epoch", flush=True)
    factors = factored_dense.use_factors(cfg.dense_gradient, global_batch,
                                         flat_features(cfg.height, cfg.width), DENSE_UNITS)
    if strategy.num_replicas_in_sync > 1:
        print("first dense layer's gradient: " + (
            "all-gathered sufficient factors" if factors else "all-reduced"), flush=True)

    # 2. Model, in the strategy scope.
    with strategy.scope():
        model = build_model(cfg.height, cfg.width, cfg.num_classes,
                            dtype_policy=cfg.dtype, weight_decay=cfg.weight_decay,
                            factored_dense=factors)
        optimizer = compile_model(model, cfg)
        checkpointer = callbacks.checkpoint.Checkpointer(
            model, optimizer, os.path.join(cfg.model_dir, "checkpoints"),
            write_dir=os.path.join(write_dir, "checkpoints"),
            max_to_keep=cfg.keep_checkpoints)
        start_step = checkpointer.restore_latest()
    if start_step:
        print(f"resumed from step {start_step}", flush=True)
    total_steps = cfg.epochs * steps_per_epoch
    finished_before = start_step >= total_steps
    if task.is_chief:
        atomic.write_json_atomic(os.path.join(cfg.model_dir, "flags.json"),
                                 {**dataclasses.asdict(cfg), "global_batch": global_batch,
                                  "steps_per_epoch": steps_per_epoch,
                                  "num_workers": task.num_workers})

    # 3. Schedule and callbacks.
    schedule = LinearScalingSchedule(
        base_lr=cfg.base_lr, global_batch=global_batch,
        reference_batch=cfg.reference_batch_size or cfg.batch_size,
        total_steps=total_steps,
        warmup_steps=min(total_steps, round(cfg.warmup_epochs * steps_per_epoch)),
        warmup_start_lr=cfg.warmup_start_lr, max_lr=cfg.max_lr, end_lr=cfg.end_lr,
        power=cfg.decay_power)
    print(f"learning rate: peak {schedule.peak_lr:g} after {schedule.warmup_steps} "
          f"warmup steps, {total_steps} steps in all", flush=True)
    checkpointing = callbacks.PeriodicCheckpoint(
        checkpointer, cfg.checkpoint_every_steps,
        agree=(lambda flag: distribute.any_worker(strategy, flag))
        if task.num_workers > 1 else None)
    stop_at_target = callbacks.StopAtTargetAccuracy(cfg.target_accuracy)
    fit_callbacks = [
        callbacks.StepLearningRateScheduler(schedule),
        callbacks.Throughput(global_batch),
        checkpointing,
        callbacks.MetricsLogger(
            os.path.join(cfg.model_dir, "metrics.jsonl") if task.is_chief else None,
            extra={"global_batch": global_batch, "num_workers": task.num_workers}),
    ]
    if cfg.target_accuracy:
        fit_callbacks.insert(2, stop_at_target)
    if cfg.tensorboard:
        fit_callbacks.append(keras.callbacks.TensorBoard(
            os.path.join(write_dir, "tensorboard"), write_graph=False, profile_batch=0))

    # 4. Fit: a partial first epoch when resuming mid-epoch, then whole epochs.
    def input_for(start):
        def make(worker_index, num_workers, batch_size):
            return dataset.train_dataset(
                dataset.files_for_worker(train_files, worker_index, num_workers),
                dataset.TrainInput(
                    height=cfg.height, width=cfg.width, batch_size=batch_size,
                    steps_per_epoch=steps_per_epoch, seed=cfg.seed,
                    num_classes=cfg.num_classes, cycle_length=cfg.cycle_length,
                    shuffle_buffer=cfg.shuffle_buffer, shuffle=cfg.shuffle,
                    augment=cfg.augment, start_step=start, worker_index=worker_index,
                    num_epochs=cfg.epochs))
        return dataset.per_worker_dataset(strategy, make, cfg.batch_size)

    def make_val(worker_index, num_workers, batch_size):
        return dataset.eval_dataset(
            dataset.files_for_worker(val_files, worker_index, num_workers),
            cfg.height, cfg.width, batch_size, cfg.num_classes, cfg.cycle_length,
            repeat=True)
    val_data = (dataset.per_worker_dataset(strategy, make_val, cfg.batch_size)
                if val_files else None)

    epoch, offset = divmod(start_step, steps_per_epoch)
    phases = []
    if offset and epoch < cfg.epochs:
        phases.append((start_step, epoch, epoch + 1, steps_per_epoch - offset))
        epoch += 1
    if epoch < cfg.epochs:
        phases.append((epoch * steps_per_epoch, epoch, cfg.epochs, steps_per_epoch))
    for start, first_epoch, end_epoch, steps in phases:
        try:
            model.fit(input_for(start), initial_epoch=first_epoch, epochs=end_epoch,
                      steps_per_epoch=steps, validation_data=val_data,
                      validation_steps=validation_steps or None, callbacks=fit_callbacks,
                      verbose=cfg.verbose, shuffle=False)
        except tf.errors.OpError as e:  # a dead peer: say so in the error's first line
            if task.num_workers > 1 and type(e).__name__ in distribute.PEER_FAILURE_ERRORS:
                raise distribute.peer_failure(e) from None
            raise
        if model.stop_training:
            break

    if cfg.final_weights_npz:
        import numpy as np  # pylint: disable=import-outside-toplevel
        np.savez(cfg.final_weights_npz.format(worker=task.worker_index),
                 *[w.numpy() for w in model.trainable_weights])

    # 5. Results.
    summary = {"global_batch": global_batch, "steps": checkpointer.step,
               "peak_lr": schedule.peak_lr, "num_workers": task.num_workers,
               "preempted": checkpointing.preempted,
               "target_accuracy": cfg.target_accuracy or None,
               "target_reached_epoch": (None if stop_at_target.reached_epoch is None
                                        else stop_at_target.reached_epoch + 1),
               "time_to_target_s": stop_at_target.time_to_target_s}
    export_dir = os.path.join(cfg.model_dir, "export")
    if finished_before:
        print(f"already trained for {start_step} steps: nothing to do", flush=True)
    if task.is_chief and not checkpointing.preempted and not (
            finished_before and os.path.exists(export_dir)):
        metrics_path = os.path.join(cfg.model_dir, "metrics.jsonl")
        if os.path.exists(metrics_path):
            history = callbacks.metrics_logger.read_metrics(metrics_path)
            summary["final"] = history[-1] if history else None
            plots.plot_training_curves(history, os.path.join(cfg.model_dir,
                                                             "training_curves.png"))
        export.export_saved_model(model, export_dir,
                                  cfg.class_names[:cfg.num_classes])
        atomic.write_json_atomic(os.path.join(cfg.model_dir, "summary.json"), summary)
    distribute.cleanup_writer_dir(write_dir, cfg.model_dir)
    return summary
