r"""mcnn-ttt: time-to-train of mcnn-train runs to a target accuracy, per configuration.

    mcnn-ttt --output_dir=out/ttt --height=128 --width=128 --target_accuracy=0.9 \
        --workers=1,2 --batch_sizes=8 --linear_scaling=both \
        --extra_train_flags='--flagfile=configs/demo.flags'
    mcnn-ttt --output_dir=out/ttt2 --target_accuracy=0.9 \
        --configs='w1:workers=1,batch_size=8;w2:workers=2,batch_size=8,warmup_epochs=2'

Trains every configuration (1 worker: one mcnn-train process; several: pinned
workers through mcnn-launch) until validation top-1 reaches --target_accuracy
or --max_epochs, on a synthetic set written to OUTPUT_DIR/data (or on
--train_files/--val_files). Writes OUTPUT_DIR/ttt.md and ttt.csv (epochs and
wall time to target, global batch, updates per epoch, peak LR, images/s,
status: reached, diverged, stalled, not reached, failed), ttt_fig9.png (top-1
and LR per epoch) and ttt_fig7.png (loss, top-1, top-5 per epoch; top-1 vs
wall clock), and prints the table. Runs already in OUTPUT_DIR/runs are
reused; diverged or stalled runs are recorded, never retried.

--configs: `name:key=value,...;name2:...`. Keys: workers, batch_size (per
worker), linear_scaling (false: --reference_batch_size = global batch, so the
peak LR stays at base_lr), cores (pinned cores per worker, 0 = all cores for
1 worker, an even split for several: 1 worker x 1 core against 2 x 1 doubles
the hardware like the paper's 1 node against 2) and any mcnn-train flag
(base_lr, warmup_epochs, max_lr, end_lr, decay_power, dtype, epochs, ...).
Flags are applied in this order, later ones winning: --extra_train_flags,
mcnn-ttt's own, the configuration's.
"""

import dataclasses
import shlex

from absl import flags, logging

from mcnn_keras import synthetic
from mcnn_keras.cli import common
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Directory for the data, the runs, the table and "
                    "the plots.")
flags.DEFINE_string("configs", "", "Configurations: 'name:key=value,...;...' (see above).")
flags.DEFINE_list("workers", [], "Grid: worker counts (with --batch_sizes; default 1).")
flags.DEFINE_list("batch_sizes", [], "Grid: per-worker batch sizes (default 8).")
flags.DEFINE_enum("linear_scaling", "on", ["on", "off", "both"],
                  "Grid: with the linear LR scaling rule, without it, or both.")
flags.DEFINE_float("target_accuracy", 0.99, "Validation top-1 that ends a run.")
flags.DEFINE_integer("max_epochs", 20, "Epochs of each run (its LR schedule spans them).")
flags.DEFINE_enum("dtype", "float32", ["float32", "mixed_bfloat16"], "Compute dtype.")
flags.DEFINE_string("extra_train_flags", "", "mcnn-train flags for every run, e.g. "
                    "'--flagfile=configs/demo.flags --augment'.")
flags.DEFINE_integer("stall_epochs", 5, "A run whose validation top-1 is not above chance "
                     "+ --stall_margin after this many epochs is stopped as stalled; 0 = off.")
flags.DEFINE_float("stall_margin", 0.05, "See --stall_epochs.")
flags.DEFINE_float("diverge_loss", 25.0, "A run whose epoch loss is above this (or not "
                   "finite) is stopped as diverged; chance is ln 13 = 2.56.")
flags.DEFINE_float("time_limit_min", 0.0, "Stop a run after this many minutes (status: "
                   "not reached); 0 = no limit.")
flags.DEFINE_string("train_files", "", "Training shards (globs); '' = write a synthetic set.")
flags.DEFINE_string("val_files", "", "Validation shards, with --train_files.")
flags.DEFINE_integer("height", 128, "Image height (of the synthetic set, and trained at).")
flags.DEFINE_integer("width", 128, "Image width.")
flags.DEFINE_integer("num_train", 1300, "Synthetic training images (balanced over 13 classes).")
flags.DEFINE_integer("num_val", 260, "Synthetic validation images.")
flags.DEFINE_integer("num_shards", 4, "Synthetic training shards (at least the workers).")
flags.DEFINE_integer("data_seed", 0, "Seed of the synthetic set.")
flags.DEFINE_enum("difficulty", "default", list(synthetic.DIFFICULTIES),
                  "Synthetic set: preset of the three options below (mcnn_keras/synthetic.py).")
for _option in dataclasses.fields(synthetic.Difficulty):
    flags.DEFINE_float(_option.name, None, f"{_option.metadata['help']} Unset: the preset's.")
flags.mark_flag_as_required("output_dir")

HELP_SECTIONS = [
    ("configurations", ["configs", "workers", "batch_sizes", "linear_scaling"]),
    ("runs", ["output_dir", "target_accuracy", "max_epochs", "dtype", "extra_train_flags",
              "stall_epochs", "stall_margin", "diverge_loss", "time_limit_min"]),
    ("data", ["train_files", "val_files", "height", "width", "num_train", "num_val",
              "num_shards", "data_seed", "difficulty",
              *(f.name for f in dataclasses.fields(synthetic.Difficulty))]),
]


def _specs():
    from mcnn_keras import ttt  # pylint: disable=import-outside-toplevel
    specs = ttt.parse_configs(FLAGS.configs)
    if FLAGS.workers or FLAGS.batch_sizes:
        try:
            workers = [int(w) for w in FLAGS.workers or ["1"]]
            batches = [int(b) for b in FLAGS.batch_sizes or ["8"]]
        except ValueError:
            raise ValueError("--workers and --batch_sizes take integers") from None
        scaling = {"on": (True,), "off": (False,), "both": (True, False)}[FLAGS.linear_scaling]
        specs = ttt.unique_names(specs + ttt.grid(workers, batches, scaling))
    if not specs:
        raise ValueError("no configuration: give --configs and/or --workers/--batch_sizes")
    return specs


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras import run_dir, topology, ttt  # pylint: disable=import-outside-toplevel
    topology.check_size_flags(FLAGS.height, FLAGS.width)
    if not 0 < FLAGS.target_accuracy <= 1:
        raise ValueError(f"--target_accuracy must be in (0, 1], got {FLAGS.target_accuracy}")
    if FLAGS.max_epochs < 1:
        raise ValueError(f"--max_epochs must be >= 1, got {FLAGS.max_epochs}")
    if bool(FLAGS.train_files) != bool(FLAGS.val_files):
        raise ValueError("give both --train_files and --val_files, or neither")
    specs = _specs()
    difficulty = synthetic.make_difficulty(FLAGS.difficulty, **{
        f.name: FLAGS[f.name].value for f in dataclasses.fields(synthetic.Difficulty)})
    output_dir = run_dir.make_output_dir(resolve_user_path(FLAGS.output_dir), "output_dir")
    if FLAGS.train_files:
        data = ttt.Data(*(",".join(resolve_user_path(p) for p in files.split(",") if p)
                          for files in (FLAGS.train_files, FLAGS.val_files)))
    else:
        data = ttt.prepare_data(output_dir, FLAGS.height, FLAGS.width, FLAGS.num_train,
                                FLAGS.num_val, FLAGS.num_shards, FLAGS.data_seed, difficulty)
    if FLAGS.target_accuracy > data.val_ceiling:
        logging.warning("--target_accuracy=%g cannot be reached: %s", FLAGS.target_accuracy,
                        data.notes)
    exp = ttt.Experiment(
        output_dir, data.train_files, data.val_files, FLAGS.height, FLAGS.width,
        FLAGS.target_accuracy, FLAGS.max_epochs, FLAGS.dtype,
        tuple(shlex.split(FLAGS.extra_train_flags)), FLAGS.stall_epochs, FLAGS.stall_margin,
        FLAGS.diverge_loss, FLAGS.time_limit_min * 60, data.notes)
    results = []
    for spec in specs:
        results.append(ttt.run_experiment(spec, exp))
        ttt.write_report(exp, results)  # after every run: partial results survive
    print(ttt.table_markdown(exp, results), end="")


def run():
    common.run_main(main, help_sections=HELP_SECTIONS)


if __name__ == "__main__":
    run()
