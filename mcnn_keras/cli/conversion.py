"""What the two converters' mains share: flags -> checked paths -> options -> job.

An `--output_dir` on object storage (s3://, gs://) is written through a local
staging directory (`--staging_dir`, default one per URL under the system's
temporary directory): the job runs there as on any local disk (resumable,
atomic shards), then the files are uploaded, each object once and complete,
`manifest.json` last. The staging directory is deleted after a successful
upload; a killed run or upload leaves it, and the same command resumes both.

Usage (in a converter binary):

    SECTIONS = config_flags.define_sections({"conversion": ImagesOptions})

    def main(argv):
        conversion.run_conversion(argv, SECTIONS, ImagesOptions, "index_csv",
                                  lambda: convert_images.convert)
"""

import hashlib
import os
import shutil
import sys
import tempfile

from absl import flags

from mcnn_keras.cli import config_flags
from mcnn_keras.cli.paths import resolve_user_path
from mcnn_keras.data.conversion.options import check_local

FLAGS = flags.FLAGS
flags.DEFINE_boolean("progress", True, "Show tqdm progress bars.")
flags.DEFINE_string("staging_dir", "", "With --output_dir on object storage: the local "
                    "directory the job writes before the upload; default: one per URL "
                    "under the system's temporary directory.")


def staging_dir(output_dir):
    """The local directory a conversion to the URL `output_dir` is written to first."""
    if FLAGS.staging_dir:
        return resolve_user_path(FLAGS.staging_dir)
    digest = hashlib.sha256(output_dir.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "mcnn-keras-staging", digest)


LIST_FLAGS = ("load_data_csv", "ome_zarr")  # input flags holding comma-separated paths


def _resolve_inputs(values, input_flags):
    """{flag: value} of the input flags: local (one line otherwise), each path
    (of a comma-separated `LIST_FLAGS` one: each) resolved as the user meant it."""
    resolved = {}
    for flag in input_flags:
        paths = ([p.strip() for p in values[flag].split(",") if p.strip()]
                 if flag in LIST_FLAGS else [values[flag]])
        for path in paths:
            check_local(**{flag: path})
        resolved[flag] = ",".join(resolve_user_path(p) for p in paths)
    return resolved


def run_conversion(argv, sections, options_class, input_flag, load_convert):
    """Runs a converter from its flags; `load_convert()` imports its job lazily
    (so `--help` stays free of TensorFlow). Prints a one-line summary.

    `input_flag`: the flag naming the input, or a tuple of them (each may
    hold comma-separated paths)."""
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras.io import atomic  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io.output_dirs import make_output_dir  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io import storage  # pylint: disable=import-outside-toplevel
    values = config_flags.values(sections)
    inputs = _resolve_inputs(values, (input_flag,) if isinstance(input_flag, str)
                             else input_flag)
    output_dir = resolve_user_path(values["output_dir"])
    remote = storage.is_remote(output_dir)
    if remote:  # tensorflow-io for s3://: one line before any work if it cannot load
        storage.require_filesystem(output_dir)
    local_dir = staging_dir(output_dir) if remote else output_dir
    if local_dir:  # a file or a read-only place: one line naming the flag
        make_output_dir(local_dir, "staging_dir" if remote else "output_dir")
    options = options_class(**{**values, **inputs, "output_dir": local_dir})
    if hasattr(options, "input_flag"):  # exactly one input: one line before TensorFlow loads
        options.input_flag()
    manifest = load_convert()(options, flags={**values, "progress": FLAGS.progress},
                              progress=FLAGS.progress)
    if remote:
        copied = atomic.upload_new_files(local_dir, output_dir, last=("manifest.json",))
        shutil.rmtree(local_dir)
        print(f"uploaded {copied} files to {output_dir}", file=sys.stderr)
    counts = manifest["counts"]
    unlabelled = (f", {counts['unlabelled_rows']} unlabelled: counted, not converted"
                  if counts.get("unlabelled_rows") else "")
    print(f"converted {sum(counts['per_class'].values())} fields of view "
          f"({counts['skipped_fields']} skipped{unlabelled}) to {output_dir}",
          file=sys.stderr)
