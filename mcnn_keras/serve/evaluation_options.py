"""The options of `mcnn-evaluate`, light enough for a binary's `--help`.

The `mcnn-evaluate` flags are generated from `EvaluateOptions`' fields
(`cli/config_flags.py`); `serve/evaluation.py` does the work.

Usage:

    options = check_options(EvaluateOptions(model_dir="runs/demo"))
"""

import dataclasses

from mcnn_keras.core.options import check_fields, option


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """What `mcnn-evaluate` evaluates, on what, and where the reports go."""

    model_dir: str = option("", "Training run to evaluate (its latest checkpoint).")
    checkpoint: str = option("", "A specific checkpoint prefix instead of the latest.")
    saved_model: str = option("", "An exported SavedModel to evaluate instead.")
    files: str = option("", "TFRecord globs; default: the run's --val_files.")
    output_dir: str = option("", "Where reports go; default <model_dir>/eval.")
    batch_size: int = option(32, "Images per prediction batch.", minimum=1)
    exclude_dmso_treatments: bool = option(
        False, "Leave DMSO out of the per-treatment accuracy (the published 12-class "
        "leave-one-compound-out protocol).")


def check_options(options):
    """Raises ValueError naming the flag of the first bad option; returns `options`."""
    check_fields(options)
    if not (options.model_dir or options.saved_model):
        raise ValueError("give --model_dir or --saved_model")
    return options
