"""The layout of a training run's directory, named once, and its files read back.

    <model_dir>/
      flags.json            the resolved configuration (flat field names) + plan,
                            and the flags each resume changed ("changes")
      metrics.jsonl         one JSON object per epoch
      training_curves.png   loss, top-1 and learning rate per epoch
      summary.json          final metrics, time-to-target
      checkpoints/          tf.train.CheckpointManager (model, optimizer, epoch)
      tensorboard/          TensorBoard event files
      export/               the serving SavedModel
      eval/                 mcnn-evaluate's reports
      run.lock              while a run trains: its holder (pid, host, since)

Every binary reads a run's configuration and metrics the same way, here. The
run's guards live beside it: `run_lock` (one run per directory), `resume`
(what a re-run may change), `restore` (the model from a checkpoint),
`leftovers` (what killed attempts left).

Usage:

    run = RunDir("runs/demo")
    run.write_config(cfg, plan, changed, step)   # once training starts
    cfg = run.load_config()                      # a config.TrainConfig
    run.class_names()                            # from the run's configuration
    read_metrics(run.metrics)                    # the epoch records
"""

import dataclasses
import datetime
import json
import os

from mcnn_keras.io import atomic
from mcnn_keras.train import config

FLAGS_JSON = "flags.json"
METRICS = "metrics.jsonl"
TRAINING_CURVES = "training_curves.png"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
EXPORT = "export"
EVAL = "eval"
LOCK = "run.lock"
# Keys of metrics.jsonl renamed since earlier versions: old name -> new name.
_RENAMED_METRICS = {"lr": "learning_rate"}


def _gfile():
    """tf.io.gfile, imported when first used: importing this module (--help,
    reports) must not load TensorFlow."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.io.gfile


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_metrics(path):
    """Returns the list of epoch records in a metrics file (`METRICS`).

    Files written before the learning rate was logged as `learning_rate`
    (Keras' name) have `lr`; both read the same.
    """
    with _gfile().GFile(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    for line in lines:
        for old, new in _RENAMED_METRICS.items():
            if old in line:
                line.setdefault(new, line.pop(old))
    return lines


@dataclasses.dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    path: str

    def join(self, name):
        return os.path.join(self.path, name)

    flags_json = property(lambda self: self.join(FLAGS_JSON))
    metrics = property(lambda self: self.join(METRICS))
    training_curves = property(lambda self: self.join(TRAINING_CURVES))
    summary = property(lambda self: self.join(SUMMARY))
    checkpoints = property(lambda self: self.join(CHECKPOINTS))
    tensorboard = property(lambda self: self.join(TENSORBOARD))
    export = property(lambda self: self.join(EXPORT))
    eval = property(lambda self: self.join(EVAL))
    lock_file = property(lambda self: self.join(LOCK))

    def load_flags(self):
        """The raw flags.json dict (configuration fields plus the run's plan)."""
        if not _gfile().exists(self.flags_json):
            raise FileNotFoundError(f"{self.flags_json} not found: is {self.path} a "
                                    f"training model_dir?")
        with _gfile().GFile(self.flags_json) as f:
            try:
                return json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.flags_json}: not valid JSON ({e})") from None

    def load_plan(self):
        """The run's plan: global_batch, steps_per_epoch (resolved), num_workers."""
        flags = self.load_flags()
        return flags.get("plan", flags)  # at the top level before 0.2

    def load_config(self):
        """The run's `config.TrainConfig` (keys of older versions are migrated)."""
        known = {f.name for _, f in config.fields()}
        values = self.load_flags()
        if isinstance(values.get("class_names"), list):  # written as a list before 0.2
            values["class_names"] = ",".join(values["class_names"])
        values.setdefault("channels", 3)  # runs from before --channels existed had three
        return config.TrainConfig.from_flat({k: v for k, v in values.items() if k in known})

    def class_names(self):
        return self.load_config().data.class_name_list()

    def write_config(self, cfg, plan, changed=None, step=0):
        """Writes flags.json: `cfg` flat, the run's `plan` (global batch, ...) and
        the history of resumes that changed flags (`changed` is added at `step`)."""
        history = self.load_flags().get("changes", []) if _gfile().exists(self.flags_json) else []
        if changed:
            history.append({"step": step, "time": _now(),
                            "flags": {k: list(v) for k, v in changed.items()}})
        # The plan apart: its steps_per_epoch is resolved, the flag's may be 0.
        atomic.write_json_atomic(self.flags_json, {
            **cfg.flat(), "plan": plan, **({"changes": history} if history else {})})
