r"""mcnn-train: trains the M-CNN on TFRecord shards.

With no flags it trains on the bundled demo set (testdata/synthetic) at the
image size stored in the records. Typical multi-worker use (one process per
worker, TF_CONFIG set by the launcher, Slurm or Kubernetes):

    mcnn-train --train_files='data/train-*.tfrecord' --val_files='data/val-*.tfrecord' \
        --model_dir=runs/bbbc021 --height=1024 --width=1280 --batch_size=8 \
        --strategy=multi_worker_mirrored --dtype=mixed_bfloat16

Outputs in --model_dir: flags.json, metrics.jsonl, training_curves.png,
checkpoints/, tensorboard/, export/ (SavedModel), summary.json.
"""

import dataclasses
import os
import sys

from absl import flags

from mcnn_keras.cli import common
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS

# Data.
flags.DEFINE_string("train_files", os.path.join(common.DEMO_DATA, "train-*.tfrecord"),
                 "Training TFRecord shards: comma-separated globs.")
flags.DEFINE_string("val_files", os.path.join(common.DEMO_DATA, "val-*.tfrecord"),
                 "Validation TFRecord shards: comma-separated globs ('' for none).")
flags.DEFINE_string("model_dir", "runs/mcnn", "Output directory (checkpoints, metrics, export).")
flags.DEFINE_integer("height", 0, "Image height; 0 = read it from the first training record.")
flags.DEFINE_integer("width", 0, "Image width; 0 = read it from the first training record.")
flags.DEFINE_integer("num_classes", 13, "Number of classes (13 = 12 mechanisms + DMSO).")
flags.DEFINE_boolean("shuffle", True, "Shuffle file order and records (seeded per epoch).")
flags.DEFINE_integer("shuffle_buffer", 256, "Records in the shuffle buffer, per worker.")
flags.DEFINE_integer("cycle_length", 16, "Files read in parallel by the interleave.")
flags.DEFINE_boolean("augment", False, "Random dihedral variant per image (the paper's 6).")
# Schedule.
flags.DEFINE_integer("batch_size", 8, "Batch size PER REPLICA; the global batch is this "
                  "times the number of replicas (workers).")
flags.DEFINE_integer("epochs", 10, "Epochs to train.")
flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0 = one pass over the "
                  "smallest worker's shards (counts the records once).")
flags.DEFINE_integer("validation_steps", 0, "Validation steps; 0 = one pass.")
flags.DEFINE_float("base_lr", 0.001, "Learning rate at the reference batch size.")
flags.DEFINE_integer("reference_batch_size", 0, "Batch size base_lr is meant for; the peak "
                  "LR is base_lr x global_batch / this. 0 = the per-replica batch.")
flags.DEFINE_float("max_lr", 0.032, "Cap on the linearly scaled peak learning rate.")
flags.DEFINE_float("warmup_start_lr", 0.001, "Learning rate at step 0.")
flags.DEFINE_float("warmup_epochs", 5.0, "Epochs of linear warmup to the peak LR.")
flags.DEFINE_float("end_lr", 1e-4, "Learning rate at the last step.")
flags.DEFINE_float("decay_power", 1.0, "Power of the polynomial decay after warmup.")
flags.DEFINE_float("momentum", 0.9, "Nesterov momentum.")
flags.DEFINE_boolean("nesterov", True, "Use Nesterov momentum.")
flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the cross-entropy.")
flags.DEFINE_float("weight_decay", 5e-5, "L2 weight decay on all trainable variables.")
# Runtime.
flags.DEFINE_enum("dtype", "float32", ["float32", "mixed_bfloat16"], "Compute dtype policy.")
flags.DEFINE_enum("strategy", "default",
               ["default", "one_device", "mirrored", "multi_worker_mirrored"],
               "tf.distribute strategy; multi_worker_mirrored reads TF_CONFIG.")
flags.DEFINE_enum("collective_implementation", "AUTO", ["AUTO", "RING"],
               "All-reduce implementation for multi_worker_mirrored.")
flags.DEFINE_float("collective_timeout_s", 600.0, "multi_worker_mirrored: fail (never hang) "
                "when a peer does not come up or stops answering for this many seconds; "
                "0 = wait forever.")
flags.DEFINE_enum("dense_gradient", "auto", ["auto", "factors", "allreduce"],
               "How replicas sync the first dense layer's gradient (98.5 % of the "
               "weights): all-gather its sufficient factors (inputs and output "
               "gradients, G x 82 432 values at global batch G), or all-reduce it "
               "(42M values). auto: factors when smaller. Same weights either way.")
flags.DEFINE_float("target_accuracy", 0.0, "Stop once validation top-1 reaches this; "
                "reports time-to-train. 0 = off.")
flags.DEFINE_integer("seed", 0, "Seed of weights and data order.")
flags.DEFINE_integer("checkpoint_every_steps", 0, "Also checkpoint every N steps "
                  "(always at epoch ends and on SIGTERM).")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints to keep.")
flags.DEFINE_boolean("tensorboard", True, "Write TensorBoard logs.")
flags.DEFINE_integer("verbose", 1, "Keras verbosity: 1 progress bar, 2 one line per epoch.")
flags.DEFINE_string("final_weights_npz", "", "Testing aid: every worker saves its final "
                    "trainable weights to this .npz ('{worker}' -> its index).")
flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads (0 = all cores).")
flags.DEFINE_integer("inter_op_threads", 0, "TensorFlow inter-op threads (0 = default).")


def config_from_flags():
    """The TrainConfig for the parsed flags (paths resolved, size from data)."""
    from mcnn_keras import dataset, training  # pylint: disable=import-outside-toplevel
    fields = {f.name for f in dataclasses.fields(training.TrainConfig)}
    values = {name: FLAGS[name].value for name in fields if name in FLAGS}
    for name in ("train_files", "val_files"):
        values[name] = ",".join(resolve_user_path(p) for p in values[name].split(",") if p)
    values["model_dir"] = resolve_user_path(values["model_dir"])
    if not values["height"] or not values["width"]:
        first = dataset.list_files(values["train_files"])[0]
        values["height"], values["width"] = dataset.image_size(first)
    return training.TrainConfig(**values)


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    common.configure_threads(FLAGS.intra_op_threads, FLAGS.inter_op_threads)
    from mcnn_keras import training  # pylint: disable=import-outside-toplevel
    summary = training.train(config_from_flags())
    if summary.get("preempted"):
        sys.exit(143)  # 128 + SIGTERM, as a process killed by it would report


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
