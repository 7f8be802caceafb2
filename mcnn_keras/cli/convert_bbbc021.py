r"""mcnn-convert-bbbc021: the BBBC021 download -> sharded TFRecords + manifest.json.

    mcnn-convert-bbbc021 --bbbc021_dir=BBBC021 --output_dir=data/loco-taxol \
        --split=loco --fold=taxol --dataset=A --workers=2 --drop_dmso

--bbbc021_dir holds BBBC021_v1_image.csv, BBBC021_v1_moa.csv and the plate
folders. Writes train-*.tfrecord, val-*.tfrecord, manifest.json (counts per
class / split / shard, normalisation statistics, these flags),
normalization.json + illumination.npz (reusable at inference). Re-running the
same command resumes: finished shards are skipped. Images are uint8 with
channels (DAPI, Tubulin, Actin). --output_dir is a local directory (copy the
shards to object storage afterwards). The same job as mcnn-convert-images,
after BBBC021's CSV join.
"""

import sys

from absl import flags

from mcnn_keras.bbbc021.options import ConvertOptions, check_local
from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS
SECTIONS = config_flags.define_sections({"conversion": ConvertOptions})
flags.DEFINE_boolean("progress", True, "Show tqdm progress bars.")
INPUT_OUTPUT = ["bbbc021_dir", "output_dir"]


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras import run_dir  # pylint: disable=import-outside-toplevel
    from mcnn_keras.bbbc021 import convert  # pylint: disable=import-outside-toplevel
    values = config_flags.values(SECTIONS)
    check_local(bbbc021_dir=values["bbbc021_dir"], output_dir=values["output_dir"])
    if values["output_dir"]:  # a file or a read-only place: one line naming the flag
        run_dir.make_output_dir(resolve_user_path(values["output_dir"]), "output_dir")
    options = ConvertOptions(**{**values,
                                "bbbc021_dir": resolve_user_path(values["bbbc021_dir"]),
                                "output_dir": resolve_user_path(values["output_dir"])})
    recorded = {**values, "progress": FLAGS.progress}
    manifest = convert.convert(options, flags=recorded, progress=FLAGS.progress)
    counts = manifest["counts"]
    print(f"converted {sum(counts['per_class'].values())} fields of view "
          f"({counts['skipped_fields']} skipped) to {options.output_dir}", file=sys.stderr)


def run():
    shared = [n for n in SECTIONS[0][1] if n not in INPUT_OUTPUT]
    common.run_main(main, help_sections=[("input and output", INPUT_OUTPUT),
                                         ("conversion", shared), ("output", ["progress"])])


if __name__ == "__main__":
    run()
