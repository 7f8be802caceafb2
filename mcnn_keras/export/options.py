"""The options of `mcnn-export`, light enough for a binary's `--help`.

The `mcnn-export` flags are generated from `ExportOptions`' fields
(`cli/config_flags.py`); `export/saved_model.py` writes the export.

Usage:

    options = check_options(ExportOptions(model_dir="runs/demo", format="onnx"))
"""

import dataclasses

from mcnn_keras.core.options import check_fields, option

FORMATS = ("saved_model", "onnx")


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """Which run's checkpoint `mcnn-export` exports, where, in which formats."""

    model_dir: str = option("", "Training run whose checkpoint to export.", required=True)
    checkpoint: str = option("", "A specific checkpoint prefix instead of the latest.")
    export_dir: str = option("", "Where to write; default <model_dir>/export.")
    format: str = option("saved_model", "saved_model: the SavedModel; onnx: the SavedModel "  # pylint: disable=redefined-builtin
                         "and model.onnx (pip install 'mcnn-keras[onnx]').", choices=FORMATS)


def check_options(options):
    """Raises ValueError naming the flag of the first bad option; returns `options`."""
    check_fields(options)
    if not options.model_dir:
        raise ValueError("--model_dir is required")
    return options
