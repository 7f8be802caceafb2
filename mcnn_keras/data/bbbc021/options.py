"""The BBBC021 converter's options, light enough for a binary's `--help`.

`ConvertOptions` = the download folder and output directory, plus every
converter's shared options (`conversion.options.SharedOptions`: split,
shards, dataset, normalisation, size; keyword-only). The
`mcnn-convert-bbbc021` flags are generated from its fields
(`cli/config_flags.py`), so options and flags cannot drift apart.

Usage:

    options = ConvertOptions("BBBC021", "out", split="loco", fold="taxol")
    check_options(options)        # ValueError naming the flag
"""

import dataclasses
import os

from mcnn_keras.core.options import option
from mcnn_keras.data.conversion.options import SharedOptions, check_local, check_values


@dataclasses.dataclass(frozen=True)
class ConvertOptions(SharedOptions):
    """The converter's settings; the `mcnn-convert-bbbc021` flags are generated
    from these fields (`cli/config_flags.py`)."""
    bbbc021_dir: str = option("", "Folder with the two CSVs and the plate folders.",
                              required=True)
    output_dir: str = option("", "Where shards and manifest.json go (a local directory).",
                             required=True)


def check_options(o):
    """Raises ValueError naming the flag of the first bad option."""
    check_values(o)
    check_local(bbbc021_dir=o.bbbc021_dir, output_dir=o.output_dir)
    if not os.path.isdir(o.bbbc021_dir):
        raise ValueError(f"--bbbc021_dir {o.bbbc021_dir}: not a directory")
