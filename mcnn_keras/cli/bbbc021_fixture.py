r"""mcnn-bbbc021-fixture: writes a miniature BBBC021 download with the real layout.

    mcnn-bbbc021-fixture --output_dir=fixture --height=128 --width=128 --plates=2

Plate folders Week<N>_<id> of 16-bit single-channel TIFFs (12-bit data) named
like the real ones, BBBC021_v1_image.csv and BBBC021_v1_moa.csv. Use
--height=1024 --width=1280 for full-size benchmarks.
"""

import dataclasses
import json

from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path
from mcnn_keras.data.bbbc021.fixture_options import FixtureOptions, check_options

SECTIONS = config_flags.define_sections({"fixture": FixtureOptions})


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras.data.bbbc021 import fixture  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io.output_dirs import make_output_dir  # pylint: disable=import-outside-toplevel
    o = check_options(FixtureOptions(**config_flags.values(SECTIONS)))
    output_dir = make_output_dir(resolve_user_path(o.output_dir), "output_dir")
    summary = fixture.write_fixture(**dataclasses.asdict(
        dataclasses.replace(o, output_dir=output_dir)))
    print(json.dumps(summary, indent=2))


def run():
    common.run_main(main, help_sections=SECTIONS)


if __name__ == "__main__":
    run()
