r"""mcnn-bbbc021-fixture: writes a miniature BBBC021 download with the real layout.

    mcnn-bbbc021-fixture --output_dir=fixture --height=128 --width=128 --plates=2

Plate folders Week<N>_<id> of 16-bit single-channel TIFFs (12-bit data) named
like the real ones, BBBC021_v1_image.csv and BBBC021_v1_moa.csv. Use
--height=1024 --width=1280 for full-size benchmarks.
"""

import json

from absl import flags

from mcnn_keras.cli import common
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS

flags.DEFINE_string("output_dir", None, "Where to write the fixture tree.")
flags.DEFINE_integer("height", 128, "Field height in pixels (real: 1024).")
flags.DEFINE_integer("width", 128, "Field width in pixels (real: 1280).")
flags.DEFINE_integer("plates", 2, "Number of plate folders.")
flags.DEFINE_integer("seed", 0, "Random seed (the output is a function of the flags).")
flags.DEFINE_integer("sites", 2, "Fields of view per well (real: 4).")
flags.DEFINE_integer("compounds_per_class", 0, "Compounds per class; 0 = all 38.")
flags.DEFINE_integer("dmso_wells", 2, "DMSO wells per plate.")
flags.DEFINE_boolean("compress", False, "zlib-compress the TIFFs (the real ones are not).")
flags.DEFINE_boolean("progress", True, "Show a tqdm progress bar.")
flags.mark_flag_as_required("output_dir")


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras.bbbc021 import fixture  # pylint: disable=import-outside-toplevel
    summary = fixture.write_fixture(
        resolve_user_path(FLAGS.output_dir), height=FLAGS.height, width=FLAGS.width,
        plates=FLAGS.plates, seed=FLAGS.seed, sites=FLAGS.sites,
        compounds_per_class=FLAGS.compounds_per_class, dmso_wells=FLAGS.dmso_wells,
        compress=FLAGS.compress, progress=FLAGS.progress)
    print(json.dumps(summary, indent=2))


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
