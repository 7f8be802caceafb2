"""The options of `mcnn-bbbc021-fixture`, beside `fixture.write_fixture` which takes them.

The `mcnn-bbbc021-fixture` flags are generated from `FixtureOptions`' fields
(`cli/config_flags.py`); the module is light (no numpy) for `--help`.

Usage:

    options = check_options(FixtureOptions(output_dir="fixture", plates=2))
    fixture.write_fixture(**dataclasses.asdict(options))
"""

import dataclasses

from mcnn_keras.core.options import check_fields, option


@dataclasses.dataclass(frozen=True)
class FixtureOptions:
    """The size and layout of the miniature BBBC021 download."""

    output_dir: str = option("", "Where to write the fixture tree.", required=True)
    height: int = option(128, "Field height in pixels (real: 1024).", minimum=8)
    width: int = option(128, "Field width in pixels (real: 1280).", minimum=8)
    plates: int = option(2, "Number of plate folders.", minimum=1)
    seed: int = option(0, "Random seed (the output is a function of the flags).", minimum=0)
    sites: int = option(2, "Fields of view per well (real: 4).", minimum=1)
    compounds_per_class: int = option(0, "Compounds per class; 0 = all 38.", minimum=0)
    dmso_wells: int = option(2, "DMSO wells per plate.", minimum=0)
    compress: bool = option(False, "zlib-compress the TIFFs (the real ones are not).")
    progress: bool = option(True, "Show a tqdm progress bar.")


def check_options(options):
    """Raises ValueError naming the flag of the first bad option; returns `options`."""
    check_fields(options)
    if not options.output_dir:
        raise ValueError("--output_dir is required")
    return options
