r"""mcnn-evaluate: top-1/top-5, confusion matrix and per-treatment accuracy.

    mcnn-evaluate --model_dir=runs/demo                      # latest checkpoint
    mcnn-evaluate --saved_model=runs/demo/export --files='data/val-*.tfrecord'

Writes metrics.json, confusion_matrix.csv/.png and predictions.csv to
--output_dir (default <model_dir>/eval).
"""

import json
import os

from absl import flags

from mcnn_keras.cli import common
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "", "Training run to evaluate (its latest checkpoint).")
flags.DEFINE_string("checkpoint", "", "A specific checkpoint prefix instead of the latest.")
flags.DEFINE_string("saved_model", "", "An exported SavedModel to evaluate instead.")
flags.DEFINE_string("files", "", "TFRecord globs; default: the run's --val_files.")
flags.DEFINE_string("output_dir", "", "Where reports go; default <model_dir>/eval.")
flags.DEFINE_integer("batch_size", 32, "Images per prediction batch.")
flags.DEFINE_boolean("exclude_dmso_treatments", False, "Leave DMSO out of the per-treatment "
                     "accuracy (the published 12-class leave-one-compound-out protocol).")


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras import config, dataset, evaluation, run_dir, storage  # pylint: disable=import-outside-toplevel
    storage.require_filesystem([FLAGS.model_dir, FLAGS.saved_model, FLAGS.files, FLAGS.output_dir])
    run = run_dir.RunDir(resolve_user_path(FLAGS.model_dir)) if FLAGS.model_dir else None
    output_dir = resolve_user_path(FLAGS.output_dir)
    if output_dir:  # before any work; the default one once the source proved real
        run_dir.make_output_dir(output_dir, "output_dir")
    if FLAGS.saved_model:
        predictor = evaluation.saved_model_predictor(resolve_user_path(FLAGS.saved_model))
    elif run:
        predictor = evaluation.checkpoint_predictor(
            run.path, resolve_user_path(FLAGS.checkpoint) or None)
    else:
        raise ValueError("give --model_dir or --saved_model")
    run_config = run.load_config() if run else None
    patterns = FLAGS.files or (run_config.data.val_files if run_config else "")
    if not patterns:
        raise ValueError("give --files (the run has no --val_files)")
    files = dataset.list_files(",".join(resolve_user_path(p) for p in patterns.split(",")))
    class_names = (run_config.data.class_name_list() if run_config else
                   config.DataConfig(num_classes=predictor.num_classes).class_name_list())
    output_dir = output_dir or run_dir.make_output_dir(
        run.eval if run else os.path.join(resolve_user_path(FLAGS.saved_model), "eval"),
        "output_dir")
    report = evaluation.evaluate(
        predictor, files, output_dir, class_names, FLAGS.batch_size,
        treatment_exclude=("DMSO",) if FLAGS.exclude_dmso_treatments else ())
    brief = {k: report[k] for k in ("source", "images", "top1", "top5")}
    if "per_treatment" in report:
        brief["per_treatment_accuracy"] = report["per_treatment"].get("accuracy")
    print(json.dumps(brief, indent=2))
    print(f"reports in {output_dir}")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
