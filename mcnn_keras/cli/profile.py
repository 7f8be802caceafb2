r"""mcnn-profile: treatment profiles from per-field features, and their MoA by 1-NN (NSC, NSCB).

    mcnn-predict --saved_model=runs/loco0/export --inputs=... --features_out=fields.parquet
    mcnn-profile --features=fields.parquet --output_dir=out/profile
    mcnn-profile --features=fields.parquet --output_dir=out/profile \
        --aggregate=mean --normalize=dmso_mad_robustize --batch=plate

Aggregates each (compound, concentration)'s fields to a profile (median or
mean; optionally normalised against the DMSO fields of each plate first) and
predicts each treatment's mechanism of action as its nearest neighbour's by
cosine similarity, the BBBC021 literature's way: NSC (neighbours of another
compound) and NSCB (of another compound and batch); DMSO is neither a query
nor a neighbour. Prints one JSON line (nsc_accuracy, nscb_accuracy, counts);
writes profiles.parquet, treatments.csv, metrics.json, confusion_nsc.png and
embedding.png to --output_dir. The rules in detail: mcnn_keras/profile.py.
"""

import json

from absl import flags

from mcnn_keras.cli import common
from mcnn_keras.cli.paths import resolve_user_path

# Kept equal to profile.AGGREGATES / NORMALIZATIONS (a test checks): importing
# the library here would slow --help down with numpy.
AGGREGATES = ("median", "mean")
NORMALIZATIONS = ("none", "dmso_center", "dmso_standardize", "dmso_mad_robustize")

FLAGS = flags.FLAGS
flags.DEFINE_string("features", "", "Per-field features table (Parquet, as written by "
                    "mcnn-predict --features_out; pycytominer's column convention).")
flags.DEFINE_string("output_dir", "", "Where the profiles, the per-treatment table, "
                    "metrics.json and the PNGs go.")
flags.DEFINE_enum("aggregate", "median", AGGREGATES, "How a treatment's fields make its "
                  "profile.")
flags.DEFINE_enum("normalize", "none", NORMALIZATIONS, "Per plate, before aggregation, "
                  "against the plate's DMSO fields: dmso_center subtracts their median; "
                  "dmso_standardize is pycytominer's 'standardize' (mean, std), "
                  "dmso_mad_robustize its 'mad_robustize' (median, 1.4826 x MAD).")
flags.DEFINE_string("batch", "plate_prefix", "What a batch is for NSCB: plate_prefix (the "
                    "plate name before its first '_': BBBC021's Week<N>), plate, or a "
                    "Metadata_* column. A candidate sharing any batch with the query is "
                    "excluded.")
flags.DEFINE_string("control", "DMSO", "The control compound (or MoA): no query, no "
                    "neighbour, and what --normalize normalises against.")


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.features:
        raise ValueError("give --features (a Parquet features table)")
    if not FLAGS.output_dir:
        raise ValueError("give --output_dir")
    from mcnn_keras import profile, run_dir, storage  # pylint: disable=import-outside-toplevel
    storage.require_filesystem([FLAGS.features, FLAGS.output_dir])
    output_dir = run_dir.make_output_dir(resolve_user_path(FLAGS.output_dir), "output_dir")
    result = profile.evaluate(resolve_user_path(FLAGS.features), FLAGS.aggregate,
                              FLAGS.normalize, FLAGS.batch, FLAGS.control, output_dir)
    print(json.dumps({**result["summary"], "output_dir": output_dir}), flush=True)


def run():
    common.run_main(main, import_tensorflow=False)


if __name__ == "__main__":
    run()
