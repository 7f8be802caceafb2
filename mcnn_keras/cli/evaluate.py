r"""mcnn-evaluate: top-1/top-5, confusion matrix and per-treatment accuracy.

    mcnn-evaluate --model_dir=runs/demo                      # latest checkpoint
    mcnn-evaluate --saved_model=runs/demo/export --files='data/val-*.tfrecord'

Writes metrics.json, confusion_matrix.csv/.png and predictions.csv to
--output_dir (default <model_dir>/eval).
"""

import json
import os

from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path
from mcnn_keras.serve.evaluation_options import EvaluateOptions, check_options

SECTIONS = config_flags.define_sections({"evaluation": EvaluateOptions})


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras.train import config  # pylint: disable=import-outside-toplevel
    from mcnn_keras.data import dataset  # pylint: disable=import-outside-toplevel
    from mcnn_keras.serve import evaluation  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io.output_dirs import make_output_dir  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import run_dir  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io import storage  # pylint: disable=import-outside-toplevel
    o = check_options(EvaluateOptions(**config_flags.values(SECTIONS)))
    storage.require_filesystem([o.model_dir, o.saved_model, o.files, o.output_dir])
    run = run_dir.RunDir(resolve_user_path(o.model_dir)) if o.model_dir else None
    output_dir = resolve_user_path(o.output_dir)
    if output_dir:  # before any work; the default one once the source proved real
        make_output_dir(output_dir, "output_dir")
    if o.saved_model:
        predictor = evaluation.saved_model_predictor(resolve_user_path(o.saved_model))
    else:
        predictor = evaluation.checkpoint_predictor(
            run.path, resolve_user_path(o.checkpoint) or None)
    run_config = run.load_config() if run else None
    patterns = o.files or (run_config.data.val_files if run_config else "")
    if not patterns:
        raise ValueError("give --files (the run has no --val_files)")
    files = dataset.list_files(",".join(resolve_user_path(p) for p in patterns.split(",")))
    class_names = (run_config.data.class_name_list() if run_config else
                   config.DataConfig(num_classes=predictor.num_classes).class_name_list())
    output_dir = output_dir or make_output_dir(
        run.eval if run else os.path.join(resolve_user_path(o.saved_model), "eval"),
        "output_dir")
    report = evaluation.evaluate(
        predictor, files, output_dir, class_names, o.batch_size,
        treatment_exclude=("DMSO",) if o.exclude_dmso_treatments else ())
    brief = {k: report[k] for k in ("source", "images", "top1", "top5")}
    if "per_treatment" in report:
        brief["per_treatment_accuracy"] = report["per_treatment"].get("accuracy")
    print(json.dumps(brief, indent=2))
    print(f"reports in {output_dir}")


def run():
    common.run_main(main, help_sections=SECTIONS)


if __name__ == "__main__":
    run()
