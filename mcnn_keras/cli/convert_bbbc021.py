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

from mcnn_keras.data.bbbc021.options import ConvertOptions
from mcnn_keras.cli import common, config_flags, conversion

SECTIONS = config_flags.define_sections({"conversion": ConvertOptions})
INPUT_OUTPUT = ["bbbc021_dir", "output_dir"]


def _convert():
    from mcnn_keras.data.bbbc021 import convert  # pylint: disable=import-outside-toplevel
    return convert.convert


def main(argv):
    conversion.run_conversion(argv, SECTIONS, ConvertOptions, "bbbc021_dir", _convert)


def run():
    shared = [n for n in SECTIONS[0][1] if n not in INPUT_OUTPUT]
    common.run_main(main, help_sections=[("input and output", INPUT_OUTPUT),
                                         ("conversion", shared),
                                         ("output", ["progress", "staging_dir"])])


if __name__ == "__main__":
    run()
