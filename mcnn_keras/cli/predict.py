r"""mcnn-predict: classifies fields of view with an exported M-CNN.

    # raw 16-bit TIFFs listed by BBBC021's image table (labels: --moa_csv, or the
    # BBBC021_v1_moa.csv beside it), normalised with the training statistics:
    mcnn-predict --saved_model=runs/x/export --inputs=new/BBBC021_v1_image.csv \
        --output_csv=new/predictions.csv --features_out=new/features.parquet
    # new plates: statistics from the input's own plates (or per image)
    mcnn-predict ... --normalization=plate
    # 8-bit RGB images the converter's way (no normalisation), or TFRecord shards:
    mcnn-predict --saved_model=runs/x/export --inputs='pngs/*.png' --output_csv=p.csv
    mcnn-predict --saved_model=runs/x/export --inputs='data/val-*.tfrecord' --output_csv=p.csv

Writes --output_csv (input files, metadata, true class if known, predicted
class, top-5 classes and probabilities, the normalisation used) and with
--features_out each field's 512-d features in Parquet, both only when the run
succeeds. Prints accuracies when labels are known (stderr) and one JSON line
on stdout: fields, skipped, seconds, fields_per_s, source, dtype, accuracies.
"""

import json
import logging
import sys

from absl import flags

from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path
from mcnn_keras.serve.predict.options import PredictOptions, index_fields

FLAGS = flags.FLAGS
_ALL = config_flags.define_sections({"prediction": PredictOptions})
# Help: this binary's own flags, then the index-CSV flags it shares with
# mcnn-convert-images.
SECTIONS = [("prediction", [n for n in _ALL[0][1] if n not in index_fields()]),
            ("index CSV input (as mcnn-convert-images)", index_fields())]
_PATHS = ("saved_model", "output_csv", "features_out", "moa_csv")


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras.serve.predict import predictor as predict  # pylint: disable=import-outside-toplevel
    # tifffile logs what it finds wrong in a damaged file; the error (or the
    # --skip_bad summary) already names the file and row.
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    values = config_flags.values(_ALL)
    values.update({name: resolve_user_path(values[name]) for name in _PATHS})
    values["inputs"] = ",".join(resolve_user_path(p.strip())
                                for p in values["inputs"].split(",") if p.strip())
    result = predict.predict(PredictOptions(**values))
    predict.report(result, sys.stderr)
    print(json.dumps(result.summary, sort_keys=True), flush=True)


def run():
    common.run_main(main, help_sections=SECTIONS)


if __name__ == "__main__":
    run()
