"""What the two converters' mains share: flags -> checked paths -> options -> job.

Usage (in a converter binary):

    SECTIONS = config_flags.define_sections({"conversion": ImagesOptions})

    def main(argv):
        conversion.run_conversion(argv, SECTIONS, ImagesOptions, "index_csv",
                                  lambda: convert_images.convert)
"""

import sys

from absl import flags

from mcnn_keras.cli import config_flags
from mcnn_keras.cli.paths import resolve_user_path
from mcnn_keras.conversion.options import check_local

FLAGS = flags.FLAGS
flags.DEFINE_boolean("progress", True, "Show tqdm progress bars.")


def run_conversion(argv, sections, options_class, input_flag, load_convert):
    """Runs a converter from its flags; `load_convert()` imports its job lazily
    (so `--help` stays free of TensorFlow). Prints a one-line summary."""
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras import run_dir  # pylint: disable=import-outside-toplevel
    values = config_flags.values(sections)
    check_local(**{input_flag: values[input_flag], "output_dir": values["output_dir"]})
    if values["output_dir"]:  # a file or a read-only place: one line naming the flag
        run_dir.make_output_dir(resolve_user_path(values["output_dir"]), "output_dir")
    options = options_class(**{**values, input_flag: resolve_user_path(values[input_flag]),
                               "output_dir": resolve_user_path(values["output_dir"])})
    manifest = load_convert()(options, flags={**values, "progress": FLAGS.progress},
                              progress=FLAGS.progress)
    counts = manifest["counts"]
    unlabelled = (f", {counts['unlabelled_rows']} unlabelled"
                  if counts.get("unlabelled_rows") else "")
    print(f"converted {sum(counts['per_class'].values())} fields of view "
          f"({counts['skipped_fields']} skipped{unlabelled}) to {options.output_dir}",
          file=sys.stderr)
