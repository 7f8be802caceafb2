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

from absl import logging

from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path
from mcnn_keras.data.synthetic.options import make_options_difficulty
from mcnn_keras.experiments.ttt.options import TTTOptions, check_options, specs

_ALL = config_flags.define_sections({"mcnn-ttt": TTTOptions})
HELP_SECTIONS = [
    ("configurations", ["configs", "workers", "batch_sizes", "linear_scaling"]),
    ("runs", ["output_dir", "target_accuracy", "max_epochs", "dtype", "extra_train_flags",
              "stall_epochs", "stall_margin", "diverge_loss", "time_limit_min"]),
    ("data", ["train_files", "val_files", "height", "width", "num_train", "num_val",
              "num_shards", "data_seed", "difficulty", "penetrance", "plate_effects",
              "dmso_like_fraction"]),
]


def _paths(files):
    return ",".join(resolve_user_path(p) for p in files.split(",") if p)


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras.io.output_dirs import make_output_dir  # pylint: disable=import-outside-toplevel
    from mcnn_keras.experiments.ttt import experiment as ttt  # pylint: disable=import-outside-toplevel
    from mcnn_keras.experiments.ttt import report as ttt_report  # pylint: disable=import-outside-toplevel
    o = TTTOptions(**config_flags.values(_ALL))
    o = check_options(dataclasses.replace(o, output_dir=resolve_user_path(o.output_dir),
                                          train_files=_paths(o.train_files),
                                          val_files=_paths(o.val_files)))
    output_dir = make_output_dir(o.output_dir, "output_dir")
    if o.train_files:
        data = ttt.Data(o.train_files, o.val_files)
    else:
        data = ttt.prepare_data(output_dir, o.height, o.width, o.num_train, o.num_val,
                                o.num_shards, o.data_seed, make_options_difficulty(o))
    if o.target_accuracy > data.val_ceiling:
        logging.warning("--target_accuracy=%g cannot be reached: %s", o.target_accuracy,
                        data.notes)
    exp = ttt.Experiment(
        output_dir, data.train_files, data.val_files, o.height, o.width,
        o.target_accuracy, o.max_epochs, o.dtype,
        tuple(shlex.split(o.extra_train_flags)), o.stall_epochs, o.stall_margin,
        o.diverge_loss, o.time_limit_min * 60, data.notes)
    results = []
    for spec in specs(o):
        results.append(ttt.run_experiment(spec, exp))
        ttt_report.write_report(exp, results)  # after every run: partial results survive
    print(ttt_report.table_markdown(exp, results), end="")


def run():
    common.run_main(main, help_sections=HELP_SECTIONS)


if __name__ == "__main__":
    run()
