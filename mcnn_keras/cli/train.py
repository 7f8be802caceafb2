r"""mcnn-train: trains the M-CNN on TFRecord shards.

With no flags it trains on the bundled demo set (testdata/synthetic) at the
image size stored in the records. Typical multi-worker use (one process per
worker, TF_CONFIG set by the launcher, Slurm or Kubernetes):

    mcnn-train --train_files='data/train-*.tfrecord' --val_files='data/val-*.tfrecord' \
        --model_dir=runs/bbbc021 --height=1024 --width=1280 --batch_size=8 \
        --strategy=multi_worker_mirrored --dtype=mixed_bfloat16

`--tf_config_from=k8s_indexed_job` (or `slurm`) builds TF_CONFIG from the pod's
(task's) environment. Paths may be gs:// or, with TensorFlow 2.16 +
tensorflow-io (`pip install 'mcnn-keras[s3]'`), s3://.

Outputs in --model_dir: flags.json, metrics.jsonl, training_curves.png,
checkpoints/, tensorboard/, export/ (SavedModel), summary.json.
Every flag is a field of mcnn_keras/train/config.py (sections data, model,
schedule, runtime).
"""

import os
import sys

from absl import flags

from mcnn_keras.core import cluster
from mcnn_keras.train import config
from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS
SECTIONS = config_flags.define_sections(config.SECTIONS)


def config_from_flags():
    """The TrainConfig for the parsed flags, with user paths resolved."""
    values = config_flags.values(SECTIONS)
    for name in ("train_files", "val_files"):
        values[name] = ",".join(resolve_user_path(p) for p in values[name].split(",") if p)
    values["model_dir"] = resolve_user_path(values["model_dir"])
    return config.validate(config.TrainConfig.from_flat(values))


def main(argv, extra_callbacks=()):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    cfg = config_from_flags()
    if cfg.runtime.tf_config_from:
        # Before the strategy is made: it reads TF_CONFIG.
        os.environ["TF_CONFIG"] = cluster.tf_config_from_environment(
            cfg.runtime.tf_config_from, os.environ)
    common.configure_threads(cfg.runtime.intra_op_threads, cfg.runtime.inter_op_threads)
    from mcnn_keras.train import training  # pylint: disable=import-outside-toplevel
    summary = training.train(cfg, extra_callbacks)
    if summary.get("preempted"):
        sys.exit(143)  # 128 + SIGTERM, as a process killed by it would report


def run():
    common.run_main(main, help_sections=SECTIONS)


if __name__ == "__main__":
    run()
