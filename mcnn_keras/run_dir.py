"""The layout of a training run's directory, named once.

    <model_dir>/
      flags.json            the resolved configuration (flat field names) + plan
      metrics.jsonl         one JSON object per epoch
      training_curves.png   loss, top-1 and learning rate per epoch
      summary.json          final metrics, time-to-target
      checkpoints/          tf.train.CheckpointManager (model, optimizer, epoch)
      tensorboard/          TensorBoard event files
      export/               the serving SavedModel
      eval/                 mcnn-evaluate's reports

Loading a run's configuration and restoring its model live here too, so every
binary reads a run the same way.

Usage:

    run = RunDir("runs/demo")
    cfg = run.load_config()                 # a config.TrainConfig
    model, cfg, checkpoint = run.restore_model()
    run.class_names()                       # from the run's configuration
"""

import dataclasses
import json
import os

from mcnn_keras import config

FLAGS_JSON = "flags.json"
METRICS = "metrics.jsonl"
TRAINING_CURVES = "training_curves.png"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
EXPORT = "export"
EVAL = "eval"


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

    def load_flags(self):
        """The raw flags.json dict (configuration fields plus the run's plan)."""
        if not os.path.exists(self.flags_json):
            raise FileNotFoundError(f"{self.flags_json} not found: is {self.path} a "
                                    f"training model_dir?")
        with open(self.flags_json) as f:
            return json.load(f)

    def load_config(self):
        """The run's `config.TrainConfig` (keys of older versions are migrated)."""
        known = {f.name for _, f in config.fields()}
        values = self.load_flags()
        if isinstance(values.get("class_names"), list):  # written as a list before 0.2
            values["class_names"] = ",".join(values["class_names"])
        return config.TrainConfig.from_flat({k: v for k, v in values.items() if k in known})

    def class_names(self):
        return self.load_config().data.class_name_list()

    def latest_checkpoint(self):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        latest = tf.train.latest_checkpoint(self.checkpoints)
        if not latest:
            raise FileNotFoundError(f"no checkpoint in {self.checkpoints}")
        return latest

    def restore_model(self, checkpoint=None):
        """Rebuilds the run's model from its latest (or the given) checkpoint.

        Returns (model, TrainConfig, checkpoint path).
        """
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        from mcnn_keras.model import build_model  # pylint: disable=import-outside-toplevel
        cfg = self.load_config()
        checkpoint = checkpoint or self.latest_checkpoint()
        model = build_model(cfg.data.height, cfg.data.width, cfg.data.num_classes)
        tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
        return model, cfg, checkpoint
