"""The options of `mcnn-profile` and their allowed values, without numpy.

The `mcnn-profile` flags are generated from `ProfileOptions`' fields
(`cli/config_flags.py`); `profiling/profile.py` does the work with the same
AGGREGATES and NORMALIZATIONS.

Usage:

    options = check_options(ProfileOptions(features="fields.parquet", output_dir="out"))
"""

import dataclasses

from mcnn_keras.core.options import check_fields, option

AGGREGATES = ("median", "mean")
NORMALIZATIONS = ("none", "dmso_center", "dmso_standardize", "dmso_mad_robustize")
DEFAULT_BATCH = "plate_prefix"


@dataclasses.dataclass(frozen=True)
class ProfileOptions:
    """What `mcnn-profile` reads, how it profiles and where the reports go."""

    features: str = option("", "Per-field features table (Parquet, as written by "
                           "mcnn-predict --features_out; pycytominer's column convention).")
    output_dir: str = option("", "Where the profiles, the per-treatment table, "
                             "metrics.json and the PNGs go.")
    aggregate: str = option("median", "How a treatment's fields make its profile.",
                            choices=AGGREGATES)
    normalize: str = option(
        "none", "Per plate, before aggregation, against the plate's DMSO fields: "
        "dmso_center subtracts their median; dmso_standardize is pycytominer's "
        "'standardize' (mean, std), dmso_mad_robustize its 'mad_robustize' (median, "
        "1.4826 x MAD).", choices=NORMALIZATIONS)
    batch: str = option(DEFAULT_BATCH, "What a batch is for NSCB: plate_prefix (the plate "
                        "name before its first '_': BBBC021's Week<N>), plate, or a "
                        "Metadata_* column. A candidate sharing any batch with the query is "
                        "excluded.")
    control: str = option("DMSO", "The control compound (or MoA): no query, no neighbour, "
                          "and what --normalize normalises against.")


def check_options(options):
    """Raises ValueError naming the flag of the first bad option; returns `options`."""
    check_fields(options)
    if not options.features:
        raise ValueError("give --features (a Parquet features table)")
    if not options.output_dir:
        raise ValueError("give --output_dir")
    return options
