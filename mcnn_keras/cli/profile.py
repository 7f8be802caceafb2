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
embedding.png to --output_dir. The rules in detail: mcnn_keras/profiling/profile.py.
"""

import json

from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path
from mcnn_keras.profiling.options import ProfileOptions, check_options

SECTIONS = config_flags.define_sections({"profiling": ProfileOptions})


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    o = check_options(ProfileOptions(**config_flags.values(SECTIONS)))
    from mcnn_keras.profiling import profile, report  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io.output_dirs import make_output_dir  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io import storage  # pylint: disable=import-outside-toplevel
    storage.require_filesystem([o.features, o.output_dir])
    output_dir = make_output_dir(resolve_user_path(o.output_dir), "output_dir")
    result = profile.evaluate(resolve_user_path(o.features), o.aggregate,
                              o.normalize, o.batch, o.control)
    report.write_report(result, output_dir)
    print(json.dumps({**result["summary"], "output_dir": output_dir}), flush=True)


def run():
    common.run_main(main, help_sections=SECTIONS, import_tensorflow=False)


if __name__ == "__main__":
    run()
