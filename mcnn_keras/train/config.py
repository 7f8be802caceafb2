"""The training configuration: one dataclass per section, the single source.

Every hyperparameter of a training run is a field of one of four sections,
each handed whole to its consumer:

| section    | consumer                                   |
|------------|--------------------------------------------|
| `data`     | `dataset` (files, image geometry, order)   |
| `model`    | `model.build_model` (dtype, regulariser)   |
| `schedule` | `schedule.LinearScalingSchedule`, compile  |
| `runtime`  | `training` (strategy, checkpoints, output) |

The `mcnn-train` flags are generated from these fields (`cli/config_flags.py`):
one flag per field, same name, the field's help text and default, so a field
cannot exist without its flag nor a flag without its field. We chose generated
flat flags over big_vision's `--config.x=...` because every documented
`--flag` and `--flagfile` recipe keeps working and absl validates types for us.
Field names are unique across sections; a run's `flags.json` holds them flat.

Usage:

    cfg = TrainConfig.from_flat({"train_files": "data/train-*.tfrecord",
                                 "model_dir": "runs/x", "batch_size": 16})
    cfg.schedule.batch_size          # 16
    cfg.flat()["base_lr"]            # 0.001
    validate(cfg)                    # ValueError naming the flag
"""

import dataclasses
import os

from mcnn_keras.core.image_size import check_size_flags
from mcnn_keras.core.options import check_value, option
from mcnn_keras.core.repo import DEMO_DATA
from mcnn_keras.data.classes import MOA_CLASSES
from mcnn_keras.model.memory import REMAT_MODES


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The TFRecord shards and how they are read."""

    train_files: str = option(os.path.join(DEMO_DATA, "train-*.tfrecord"),
                              "Training TFRecord shards: comma-separated globs.")
    val_files: str = option(os.path.join(DEMO_DATA, "val-*.tfrecord"),
                            "Validation TFRecord shards: comma-separated globs ('' for none).")
    height: int = option(0, "Image height; 0 = the manifest's next to the shards, else the "
                         "first training record's.", minimum=0)
    width: int = option(0, "Image width; 0 = as --height.", minimum=0)
    channels: int = option(0, "Stains per image (3: BBBC021, 5: Cell Painting); 0 = the "
                           "manifest's channel list next to the shards, else the first "
                           "training record.", minimum=0)
    num_classes: int = option(0, "Number of classes; 0 = the manifest's class list next to "
                              "the shards, else 13 (12 mechanisms + DMSO).", minimum=0)
    class_names: str = option("", "Comma-separated class names in label order; '' = the "
                              "manifest's, else the BBBC021 mechanisms of action (DMSO "
                              "last).")
    shuffle: bool = option(True, "Shuffle file order and records (seeded per epoch).")
    shuffle_buffer: int = option(256, "Records in the shuffle buffer, per worker.", minimum=1)
    cycle_length: int = option(16, "Files read in parallel by the interleave.", minimum=1)
    balance: str = option("none", "class: keep each record of class c with probability "
                          "min count / count(c), so every class is seen about equally "
                          "often (screens where DMSO is half the wells); the order stays a "
                          "function of seed, epoch and worker (mcnn_keras/data/balance.py).",
                          choices=("none", "class"))
    augment: bool = option(False, "A random dihedral variant per image (the field's "
                           "symmetry group: 4 for rectangles, 8 for squares).")

    def class_name_list(self):
        """The `num_classes` class names, in label order (0 classes: all names given)."""
        names = ([n.strip() for n in self.class_names.split(",")] if self.class_names
                 else list(MOA_CLASSES))
        if len(names) < self.num_classes:
            raise ValueError(f"--class_names has {len(names)} names for "
                             f"--num_classes={self.num_classes}")
        if len(set(names)) != len(names):
            raise ValueError(f"--class_names={self.class_names!r}: a name occurs twice")
        return names[:self.num_classes or len(names)]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """How the M-CNN is built (its topology is fixed; see model.py)."""

    dtype: str = option("float32", "Compute dtype policy.",
                        choices=("float32", "mixed_bfloat16"))
    weight_decay: float = option(5e-5, "L2 weight decay on all trainable variables.",
                                 minimum=0.0)
    dense_gradient: str = option(
        "auto", "How replicas sync the first dense layer's gradient (98.5 % of the "
        "weights): all-gather its sufficient factors (inputs and output gradients, "
        "G x 82 432 values at global batch G), or all-reduce it (42M values). auto: "
        "factors when smaller. Same weights either way.",
        choices=("auto", "factors", "allreduce"))
    remat: str = option(
        "none", "Recompute these pathways' activations in the backward pass, one image at a "
        "time, instead of keeping them: full_res (the 1x pathway, 74 % of the activations "
        "and 71 % of the FLOPs) or all. Less memory (see --batch_size=auto), more compute; "
        "same weights and checkpoints.", choices=REMAT_MODES)
    microbatches: int = option(
        1, "Split each per-replica batch into this many micro-batches, each run forward and "
        "backward in turn, and apply their averaged gradient once: the same update with one "
        "micro-batch's activations in memory, nothing recomputed. Must divide --batch_size. "
        "auto (or 0): the fewest whose step fits --memory_budget_gb by the memory model "
        "(1 with --batch_size=auto).", minimum=0, auto=0)


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Batch, epochs, learning-rate recipe, optimizer and loss (the paper's)."""

    batch_size: int = option(8, "Batch size PER REPLICA; the global batch is this times "
                             "the number of replicas (workers). auto (or 0): the largest "
                             "that fits --memory_budget_gb by the analytic memory model "
                             "(mcnn_keras/model/memory.py); the pick is logged.", minimum=0, auto=0)
    memory_budget_gb: float = option(
        0.0, "Memory per worker for --batch_size=auto, in GB (1e9 bytes); 0 = this host's "
        "MemTotal minus 15 % (at least 2 GiB), split among its workers.", minimum=0.0)
    epochs: int = option(10, "Epochs to train.", minimum=1)
    steps_per_epoch: int = option(0, "Steps per epoch; 0 = one pass over the smallest "
                                  "worker's shards (counts the records once).", minimum=0)
    validation_steps: int = option(0, "Validation steps; 0 = one pass.", minimum=0)
    base_lr: float = option(0.001, "Learning rate at the reference batch size.", above=0.0)
    reference_batch_size: int = option(0, "Batch size base_lr is meant for; the peak LR is "
                                       "base_lr x global batch / this. 0 = the per-replica "
                                       "batch.", minimum=0)
    max_lr: float = option(0.032, "Cap on the linearly scaled peak learning rate.", above=0.0)
    warmup_start_lr: float = option(0.001, "Learning rate at step 0.", minimum=0.0)
    warmup_epochs: float = option(5.0, "Epochs of linear warmup to the peak LR.", minimum=0.0)
    end_lr: float = option(1e-4, "Learning rate at the last step.", minimum=0.0)
    decay_power: float = option(1.0, "Power of the polynomial decay after warmup.",
                                above=0.0)
    momentum: float = option(0.9, "Momentum of SGD.", minimum=0.0)
    nesterov: bool = option(True, "Use Nesterov momentum.")
    label_smoothing: float = option(0.1, "Label smoothing of the cross-entropy.",
                                    minimum=0.0)


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the run executes: outputs, strategy, checkpoints, threads."""

    model_dir: str = option("runs/mcnn", "Output directory (checkpoints, metrics, export).")
    strategy: str = option("default", "tf.distribute strategy; multi_worker_mirrored "
                           "reads TF_CONFIG.",
                           choices=("default", "one_device", "mirrored",
                                    "multi_worker_mirrored"))
    collective_implementation: str = option(
        "AUTO", "All-reduce implementation for multi_worker_mirrored.",
        choices=("AUTO", "RING"))
    collective_timeout_s: float = option(
        0.0, "multi_worker_mirrored: fail when one collective waits this many seconds "
        "(for a peer that is alive but stuck); 0 = no such bound. A dead or unreachable "
        "peer is detected anyway, by TensorFlow's heartbeats, within about 10 s. "
        "TensorFlow holds a thread per collective for this long: keep it short "
        "(distribute.make_strategy).", minimum=0.0)
    startup_timeout: float = option(
        600.0, "multi_worker_mirrored: seconds to wait for every worker to start (workers "
        "may start minutes apart; whom we wait for is logged every 30 s), then fail "
        "naming the missing ones.", above=0.0)
    tf_config_from: str = option(
        "", "multi_worker_mirrored: build TF_CONFIG from the environment instead of reading "
        "it: k8s_indexed_job (JOB_COMPLETION_INDEX, MCNN_NUM_WORKERS, MCNN_JOB_NAME, "
        "MCNN_SERVICE_NAME, MCNN_PORT; deploy/kubernetes/indexed_job.yaml) or slurm (SLURM_*, "
        "first port MCNN_PORT); '' = TF_CONFIG as set.",
        choices=("", "k8s_indexed_job", "slurm"))
    target_accuracy: float = option(0.0, "Stop once validation top-1 reaches this; reports "
                                    "time-to-train. 0 = off.", minimum=0.0)
    seed: int = option(0, "Seed of weights and data order.", minimum=0)
    checkpoint_every_steps: int = option(0, "Also checkpoint every N steps (always at "
                                         "epoch ends and on SIGTERM).", minimum=0)
    keep_checkpoints: int = option(3, "Checkpoints to keep.", minimum=1)
    tensorboard: bool = option(True, "Write TensorBoard logs.")
    verbose: int = option(1, "Keras verbosity: 0 silent, 1 progress bar, 2 one line per "
                          "epoch.", choices=(0, 1, 2))
    intra_op_threads: int = option(0, "TensorFlow intra-op threads (0 = all cores, or "
                                   "TF_NUM_INTRAOP_THREADS).", minimum=0)
    inter_op_threads: int = option(0, "TensorFlow inter-op threads (0 = default, or "
                                   "TF_NUM_INTEROP_THREADS).", minimum=0)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "schedule": ScheduleConfig,
            "runtime": RuntimeConfig}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs, in four sections."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    @classmethod
    def from_flat(cls, values):
        """Builds a config from {field name: value}; unknown names raise ValueError."""
        values = dict(values)
        sections = {}
        for name, section in SECTIONS.items():
            names = {f.name for f in dataclasses.fields(section)}
            sections[name] = section(**{k: values.pop(k) for k in list(values) if k in names})
        if values:
            raise ValueError(f"unknown configuration field(s) {sorted(values)}")
        return cls(**sections)

    def flat(self):
        """{field name: value} over all sections (what flags.json records)."""
        return {k: v for section in SECTIONS for k, v in
                dataclasses.asdict(getattr(self, section)).items()}

    def replace(self, **changes):
        """A copy with some fields (by flat name) changed."""
        return TrainConfig.from_flat({**self.flat(), **changes})


# Flags a re-run on an existing model_dir may change (`resume.check_resume`).
# They say how long to train and how to run, checkpoint and log, never what is
# trained: changing data, model, seed or the schedule's shape would mix two
# experiments in one directory's checkpoints and metrics. `epochs` extends (or
# ends) a run: the LR decay then spans the new length from the resumed step on.
# `dense_gradient` is only how replicas sync one gradient (same weights), `remat`
# and `microbatches` how the same gradient is computed;
# `model_dir` may differ when the directory was moved or given relatively.
# What these resolve to (the global batch, steps per epoch) must still match:
# `resume.check_plan`.
RESUMABLE_CHANGES = ("epochs", "target_accuracy", "model_dir", "strategy",
                     "collective_implementation", "collective_timeout_s", "startup_timeout",
                     "tf_config_from", "checkpoint_every_steps", "keep_checkpoints",
                     "tensorboard", "verbose", "intra_op_threads", "inter_op_threads",
                     "dense_gradient", "remat", "microbatches", "memory_budget_gb")


def differences(old, new):
    """{flat field name: (old value, new value)} of the fields where two configs differ."""
    a, b = old.flat(), new.flat()
    return {name: (a[name], b[name]) for name in a if a[name] != b[name]}


def fields():
    """(section name, dataclasses.Field) of every configuration field, in order."""
    return [(name, f) for name, section in SECTIONS.items()
            for f in dataclasses.fields(section)]


def validate(cfg):
    """Checks every field's range before any work starts (one line naming the flag)."""
    flat = cfg.flat()
    for _, f in fields():
        check_value(f.name, flat[f.name], f.metadata)
    if cfg.data.height or cfg.data.width:
        check_size_flags(cfg.data.height, cfg.data.width)
    cfg.data.class_name_list()
    check_microbatches(cfg.schedule.batch_size, cfg.model.microbatches)
    if cfg.runtime.tf_config_from and cfg.runtime.strategy != "multi_worker_mirrored":
        raise ValueError(f"--tf_config_from={cfg.runtime.tf_config_from} needs "
                         f"--strategy=multi_worker_mirrored")
    return cfg


def check_microbatches(batch_size, microbatches):
    """Raises ValueError unless `microbatches` slices a batch evenly (0 = auto picks so)."""
    if microbatches and batch_size % microbatches:
        raise ValueError(f"--batch_size={batch_size} is not divisible by "
                         f"--microbatches={microbatches}")
