"""Trains the M-CNN: data -> model -> schedule -> distribute -> fit -> export.

`train(config.TrainConfig(...))` is what the `mcnn-train` binary runs; it
reads top to bottom in phases. Under any strategy (one process, or many
workers configured by TF_CONFIG) it:

1. set-up: builds the strategy (and installs the Keras multi-worker fix),
   lists and shards the TFRecord files (file i -> worker i % n) and works out
   the steps per epoch (equal on every worker);
2. model: builds and compiles it in the strategy scope (Nesterov SGD, softmax
   cross-entropy with label smoothing, L2 weight decay, top-1/top-5) and
   restores the chief's latest checkpoint (model, optimizer, step);
3. callbacks: learning rate per step (linear scaling rule, warmup, polynomial
   decay), images/s, checkpoints every N steps and on SIGTERM,
   stop-at-target-accuracy, metrics.jsonl, TensorBoard;
4. fit: the deterministic data stream resumes at exactly the restored step,
   a partial epoch first if the run stopped mid-epoch (`plan_fit_phases`);
5. results: on the chief, the SavedModel, the training curves PNG and
   summary.json (`run_dir` names the files). Other workers write to scratch
   space that is deleted at the end.

Usage:

    from mcnn_keras.train import config
from mcnn_keras.train.data_shape import resolve_data_shape
    from mcnn_keras.train import training
    summary = training.train(config.TrainConfig.from_flat({
        "train_files": "data/train-*.tfrecord", "val_files": "data/val-*.tfrecord",
        "model_dir": "runs/demo", "height": 128, "width": 128, "epochs": 5}))
"""

import contextlib
import dataclasses
import logging
import math
import os

import keras
import tensorflow as tf

from mcnn_keras.core import cluster
from mcnn_keras.data import dataset
from mcnn_keras.export import saved_model as export
from mcnn_keras.io import atomic
from mcnn_keras.io import plots
from mcnn_keras.io import storage
from mcnn_keras.model import memory
from mcnn_keras.model import microbatch
from mcnn_keras.model import optimizer as mcnn_optimizer
from mcnn_keras.model import topology
from mcnn_keras.model.network import build_model
from mcnn_keras.model.topology import DENSE_UNITS, flat_features
from mcnn_keras.train import checkpoints as train_checkpoints
from mcnn_keras.train import config
from mcnn_keras.train.data_shape import resolve_data_shape
from mcnn_keras.train import distribute
from mcnn_keras.train import keras_multiworker_fix
from mcnn_keras.train import leftovers
from mcnn_keras.train import resume
from mcnn_keras.train import run_dir
from mcnn_keras.train import run_lock
from mcnn_keras.train.callbacks import checkpoint
from mcnn_keras.train.callbacks import divergence
from mcnn_keras.train.callbacks import lr_scheduler
from mcnn_keras.train.callbacks import metrics_logger
from mcnn_keras.train.callbacks import target_accuracy
from mcnn_keras.train.callbacks import throughput
from mcnn_keras.train.schedule import LinearScalingSchedule

_LOG = logging.getLogger(__name__)


# --- Loss and optimizer --------------------------------------------------------

def sparse_smoothed_crossentropy(num_classes, label_smoothing):
    """Softmax cross-entropy on integer labels with label smoothing."""
    def loss(labels, logits):
        labels = keras.ops.cast(keras.ops.reshape(labels, (-1,)), "int32")
        one_hot = keras.ops.one_hot(labels, num_classes)
        return keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=label_smoothing)
    loss.__name__ = "smoothed_crossentropy"
    return loss


def compile_model(model, schedule, num_classes):
    """Compiles with the recipe of the `config.ScheduleConfig` section `schedule`."""
    optimizer = mcnn_optimizer.SGD(learning_rate=schedule.warmup_start_lr,
                                   momentum=schedule.momentum, nesterov=schedule.nesterov)
    model.compile(
        optimizer=optimizer,
        loss=sparse_smoothed_crossentropy(num_classes, schedule.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1"),
                 keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")],
        jit_compile=False)
    optimizer.build(model.trainable_variables)  # so a checkpoint can restore into it
    return optimizer


# --- Planning (pure) -------------------------------------------------------------

def _steps(files_per_worker, count, batch_size, rounding):
    counts = [sum(count[f] for f in files) for files in files_per_worker]
    steps = min(rounding(n / batch_size) for n in counts)
    return steps, counts


def plan_steps(schedule, train_files, val_files, num_workers):
    """Steps per epoch and validation steps, identical on every worker."""
    needed = [f for f in train_files if not schedule.steps_per_epoch]
    needed += [f for f in val_files if not schedule.validation_steps]
    count = dataset.count_records(needed) if needed else {}
    shards = lambda files: [dataset.files_for_worker(files, w, num_workers)
                            for w in range(num_workers)]
    steps_per_epoch = schedule.steps_per_epoch
    if not steps_per_epoch:
        steps_per_epoch, counts = _steps(shards(train_files), count, schedule.batch_size,
                                         math.floor)
        if steps_per_epoch < 1:
            raise ValueError(f"too few training records for one batch of "
                             f"{schedule.batch_size} per worker (records per worker: {counts})")
    validation_steps = schedule.validation_steps
    if val_files and not validation_steps:
        validation_steps, _ = _steps(shards(val_files), count, schedule.batch_size, math.ceil)
    return steps_per_epoch, validation_steps


@dataclasses.dataclass(frozen=True)
class Phase:
    """One `model.fit` call: epochs [first_epoch, end_epoch) from `start_step`."""

    start_step: int
    first_epoch: int
    end_epoch: int
    steps_per_epoch: int


def plan_fit_phases(start_step, steps_per_epoch, epochs):
    """The fit calls that take a run from `start_step` to the end of `epochs`.

    Resuming mid-epoch needs a short first phase (the rest of that epoch),
    then whole epochs; Keras' `fit` cannot start inside an epoch.
    """
    epoch, offset = divmod(start_step, steps_per_epoch)
    phases = []
    if offset and epoch < epochs:
        phases.append(Phase(start_step, epoch, epoch + 1, steps_per_epoch - offset))
        epoch += 1
    if epoch < epochs:
        phases.append(Phase(epoch * steps_per_epoch, epoch, epochs, steps_per_epoch))
    return phases


# --- Phases of a run -------------------------------------------------------------

@dataclasses.dataclass
class _Run:
    """What set-up works out: the cluster, the files and the step plan."""

    strategy: tf.distribute.Strategy
    task: object  # cluster.TaskInfo
    out: run_dir.RunDir  # the real run directory (the chief writes it)
    scratch: run_dir.RunDir  # where this worker writes (scratch unless chief)
    train_files: list
    val_files: list
    steps_per_epoch: int
    validation_steps: int
    global_batch: int


def _set_up(cfg, out, chief):
    runtime = cfg.runtime
    strategy = distribute.make_strategy(runtime.strategy, runtime.collective_implementation,
                                        runtime.collective_timeout_s, runtime.startup_timeout)
    keras_multiworker_fix.apply(strategy)  # no-op unless Keras' bugs can bite
    task = distribute.task_info(strategy)
    if task.is_chief != chief:  # both read TF_CONFIG: a disagreement is our bug
        raise RuntimeError(f"TF_CONFIG says chief={chief}, the strategy says "
                           f"chief={task.is_chief}")
    keras.utils.set_random_seed(runtime.seed)
    scratch = run_dir.RunDir(distribute.writer_dir(runtime.model_dir, task))
    tf.io.gfile.makedirs(scratch.path)

    train_files = dataset.list_files(cfg.data.train_files)
    val_files = dataset.list_files(cfg.data.val_files) if cfg.data.val_files else []
    for files, what in ((train_files, "training"), (val_files, "validation")):
        if files:
            dataset.files_for_worker(files, task.num_workers - 1, task.num_workers, what)
    steps_per_epoch, validation_steps = plan_steps(cfg.schedule, train_files, val_files,
                                                   task.num_workers)
    global_batch = cfg.schedule.batch_size * strategy.num_replicas_in_sync
    _LOG.info("worker %d/%d: %d train shards, per-replica batch %d, global batch %d, "
                 "%d steps/epoch", task.worker_index, task.num_workers, len(train_files),
                 cfg.schedule.batch_size, global_batch, steps_per_epoch)
    return _Run(strategy, task, out, scratch, train_files,
                val_files, steps_per_epoch, validation_steps, global_batch)


def _build(cfg, run):
    """Model, optimizer and checkpointer in the strategy scope; the restored step.

    First removes what killed earlier attempts left behind (the chief in the
    model_dir it holds locked; every worker its host's dead scratch dirs).
    """
    leftovers.remove_leftovers(run.out if run.task.is_chief else None)
    factors = topology.use_factors(
        cfg.model.dense_gradient, run.global_batch,
        flat_features(cfg.data.height, cfg.data.width), DENSE_UNITS)
    if run.strategy.num_replicas_in_sync > 1:
        _LOG.info("first dense layer's gradient: %s", "all-gathered sufficient factors"
                     if factors else "all-reduced")
    with run.strategy.scope():
        model = build_model(cfg.data.height, cfg.data.width, cfg.data.channels,
                            cfg.data.num_classes, dtype_policy=cfg.model.dtype, weight_decay=cfg.model.weight_decay,
                            factored_dense=factors, remat=cfg.model.remat)
        optimizer = compile_model(model, cfg.schedule, cfg.data.num_classes)
        microbatch.split_train_step(model, cfg.model.microbatches)
        if cfg.model.microbatches > 1:
            _LOG.info("each batch of %d in %d micro-batches of %d", cfg.schedule.batch_size,
                      cfg.model.microbatches, cfg.schedule.batch_size // cfg.model.microbatches)
        checkpointer = train_checkpoints.Checkpointer(
            model, optimizer, run.out.checkpoints, write_dir=run.scratch.checkpoints,
            max_to_keep=cfg.runtime.keep_checkpoints)
        start_step = checkpointer.restore_latest()
    if start_step:
        _LOG.info("resumed from step %d", start_step)
    return model, checkpointer, start_step


def _callbacks(cfg, run, checkpointer, schedule):
    """(callback list, the checkpointing callback, the target callback or None)."""
    checkpointing = checkpoint.PeriodicCheckpoint(
        checkpointer, cfg.runtime.checkpoint_every_steps,
        agree=(lambda flag: distribute.any_worker(run.strategy, flag))
        if run.task.num_workers > 1 else None)
    stop_at_target = (target_accuracy.StopAtTargetAccuracy(cfg.runtime.target_accuracy)
                      if cfg.runtime.target_accuracy else None)
    # StopOnDivergence first: it must raise before any callback saves or votes.
    fit_callbacks = [divergence.StopOnDivergence(),
                     lr_scheduler.StepLearningRateScheduler(schedule),
                     throughput.Throughput(run.global_batch)]
    fit_callbacks += [stop_at_target] if stop_at_target else []
    fit_callbacks += [checkpointing, metrics_logger.MetricsLogger(
        run.out.metrics if run.task.is_chief else None,
        extra={"global_batch": run.global_batch, "num_workers": run.task.num_workers})]
    if cfg.runtime.tensorboard:
        fit_callbacks.append(keras.callbacks.TensorBoard(
            run.scratch.tensorboard, write_graph=False, profile_batch=0))
    return fit_callbacks, checkpointing, stop_at_target


def _fit(cfg, run, model, phases, fit_callbacks):
    """Runs the fit phases; the input of each resumes at its first step."""
    def input_for(start):
        def make(worker_index, num_workers, batch_size):
            return dataset.train_dataset(
                dataset.files_for_worker(run.train_files, worker_index, num_workers),
                cfg.data, dataset.Stream(
                    batch_size=batch_size, steps_per_epoch=run.steps_per_epoch,
                    seed=cfg.runtime.seed, num_epochs=cfg.schedule.epochs,
                    start_step=start, worker_index=worker_index))
        return distribute.per_worker_dataset(run.strategy, make, cfg.schedule.batch_size)

    def make_val(worker_index, num_workers, batch_size):
        return dataset.eval_dataset(
            dataset.files_for_worker(run.val_files, worker_index, num_workers),
            cfg.data.height, cfg.data.width, batch_size, cfg.data.num_classes,
            cfg.data.cycle_length, repeat=True, channels=cfg.data.channels)
    val_data = (distribute.per_worker_dataset(run.strategy, make_val, cfg.schedule.batch_size)
                if run.val_files else None)

    for phase in phases:
        try:
            model.fit(input_for(phase.start_step), initial_epoch=phase.first_epoch,
                      epochs=phase.end_epoch, steps_per_epoch=phase.steps_per_epoch,
                      validation_data=val_data,
                      validation_steps=run.validation_steps or None,
                      callbacks=fit_callbacks, verbose=cfg.runtime.verbose, shuffle=False)
        except (tf.errors.OpError, UnicodeDecodeError) as e:  # a dead peer, a damaged shard
            if run.task.num_workers > 1 and type(e).__name__ in distribute.PEER_FAILURE_ERRORS:
                raise distribute.peer_failure(e) from None
            mine = [f for files in (run.train_files, run.val_files) if files for f in
                    dataset.files_for_worker(files, run.task.worker_index, run.task.num_workers)]
            raise dataset.diagnose_read_error(mine, e) from None
        except checkpoint.Preempted as e:  # checkpoint saved; skip the epoch's validation
            _LOG.warning("%s", e)
            for callback in fit_callbacks:
                callback.on_train_end()  # fit skipped them (TensorBoard closes its files)
            break
        except divergence.DivergenceError as e:  # the same step on every worker
            raise e.with_context((e.step - 1) // run.steps_per_epoch + 1,
                                 "lower --base_lr/--max_lr or lengthen --warmup_epochs"
                                 ) from None
        if model.stop_training:
            break


def _write_results(cfg, run, model, summary):
    """The chief's curves PNG, SavedModel and summary.json."""
    if tf.io.gfile.exists(run.out.metrics):
        history = run_dir.read_metrics(run.out.metrics)
        summary["final"] = history[-1] if history else None
        plots.plot_training_curves(history, run.out.training_curves)
    export.export_saved_model(model, run.out.export, cfg.data.class_name_list(),
                              train_files=cfg.data.train_files)
    atomic.write_json_atomic(run.out.summary, summary)


# --- The run ---------------------------------------------------------------------

def _is_chief(runtime):
    """Whether this process is the chief, from --strategy and TF_CONFIG: known
    before the strategy is built (which waits for every worker)."""
    tf_config = os.environ.get("TF_CONFIG", "").strip()
    if runtime.strategy != "multi_worker_mirrored" or not tf_config:
        return True
    return cluster.parse_tf_config(tf_config).is_chief


def train(cfg, extra_callbacks=()):
    """Runs training as configured; returns the summary dict (also in summary.json).

    The chief holds the model_dir's lock (`run_lock.hold`) for the whole run,
    taken first, so a second run on the directory fails at once. A re-run may
    change only `config.RESUMABLE_CHANGES` (`resume`); flags.json is written
    once the model is built and restored. `extra_callbacks` are added to
    Keras' `fit` after the project's own.
    """
    cfg = config.validate(cfg)
    # Before any work: s3:// without a loadable tensorflow-io is one line.
    storage.require_filesystem([cfg.data.train_files, cfg.data.val_files,
                                cfg.runtime.model_dir])
    chief = _is_chief(cfg.runtime)
    out = run_dir.RunDir(cfg.runtime.model_dir)
    with run_lock.hold(out) if chief else contextlib.nullcontext():
        return _train(cfg, out, extra_callbacks, chief)


def _train(cfg, out, extra_callbacks, chief):
    # Unset sizes, channels and classes -> the shards' manifest and records;
    # "auto" batches -> what memory allows. The picks are checked like flags.
    cfg = config.validate(memory.resolve_memory(resolve_data_shape(cfg)))
    changed = resume.check_resume(out, cfg) if chief else {}  # before anything is built
    if chief:
        export.check_export_dir(out.export)  # not at the end of a long run
    run = _set_up(cfg, out, chief)
    plan = {"global_batch": run.global_batch, "steps_per_epoch": run.steps_per_epoch,
            "num_workers": run.task.num_workers}
    if chief:
        resume.check_plan(out, plan)
    model, checkpointer, start_step = _build(cfg, run)
    total_steps = cfg.schedule.epochs * run.steps_per_epoch
    if chief:  # training starts: only now may flags.json change
        if changed:
            _LOG.info("resuming at step %d with changed flags: %s", start_step, ", ".join(
                f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
        out.write_config(cfg, plan, changed, start_step)

    schedule = LinearScalingSchedule.for_run(cfg.schedule, run.global_batch,
                                             run.steps_per_epoch)
    _LOG.info("learning rate: peak %g after %d warmup steps, %d steps in all",
                 schedule.peak_lr, schedule.warmup_steps, total_steps)
    fit_callbacks, checkpointing, stop_at_target = _callbacks(cfg, run, checkpointer, schedule)
    phases = plan_fit_phases(start_step, run.steps_per_epoch, cfg.schedule.epochs)
    _fit(cfg, run, model, phases, fit_callbacks + list(extra_callbacks))

    reached = stop_at_target.reached_epoch if stop_at_target else None
    summary = {"global_batch": run.global_batch, "steps": checkpointer.step,
               "peak_lr": schedule.peak_lr, "num_workers": run.task.num_workers,
               "preempted": checkpointing.preempted,
               "target_accuracy": cfg.runtime.target_accuracy or None,
               "target_reached_epoch": None if reached is None else reached + 1,
               "time_to_target_s": stop_at_target.time_to_target_s if stop_at_target
               else None}
    if not phases:
        _LOG.info("already trained for %d steps: nothing to do", start_step)
    if run.task.is_chief and not checkpointing.preempted and (
            phases or not tf.io.gfile.exists(run.out.export)):
        _write_results(cfg, run, model, summary)
    distribute.cleanup_writer_dir(run.scratch.path, run.out.path)
    return summary
