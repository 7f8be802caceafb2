r"""mcnn-synthetic: writes synthetic BBBC021-like TFRecord shards (train and val).

    mcnn-synthetic --output_dir=data/synthetic \
        --num_train=1300 --num_val=260 --num_shards=4 --seed=1 --compression=GZIP

Writes `train-0000i-of-0000n.tfrecord` (num_shards shards) and
`val-*.tfrecord` (max(1, num_shards // 2) shards) under --output_dir.
`--difficulty=hard` (or --penetrance, --plate_effects, --dmso_like_fraction)
makes a harder set: see mcnn_keras/synthetic.py.
"""

import dataclasses
import json

from absl import flags

from mcnn_keras import synthetic  # no TensorFlow at import: --help stays instant
from mcnn_keras.cli import common
from mcnn_keras.cli.paths import resolve_user_path

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Directory for the TFRecord shards.")
flags.DEFINE_integer("height", 128, "Image height: a multiple of 128 (or 724).")
flags.DEFINE_integer("width", 128, "Image width: a multiple of 128 (or 724).")
flags.DEFINE_integer("num_train", 1300, "Training images (balanced over 13 classes).")
flags.DEFINE_integer("num_val", 260, "Validation images (balanced over 13 classes).")
flags.DEFINE_integer("num_shards", 4, "Training shards; val gets max(1, num_shards // 2).")
flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives byte-identical files.")
flags.DEFINE_enum("compression", "", ["", "GZIP"], "TFRecord compression.")
flags.DEFINE_enum("difficulty", "default", list(synthetic.DIFFICULTIES),
                  "Preset of the three options below (default: all off).")
for _option in dataclasses.fields(synthetic.Difficulty):
    flags.DEFINE_float(_option.name, None, f"{_option.metadata['help']} Unset: the preset's.")
flags.mark_flag_as_required("output_dir")


def main(argv):
    """Checks the flags (one-line ValueError naming the flag), then writes."""
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from mcnn_keras import topology  # pylint: disable=import-outside-toplevel
    topology.check_size_flags(FLAGS.height, FLAGS.width)
    for name in ("num_train", "num_val"):
        if FLAGS[name].value < 0:
            raise ValueError(f"--{name} must be >= 0, got {FLAGS[name].value}")
    if FLAGS.num_shards < 1:
        raise ValueError(f"--num_shards must be >= 1, got {FLAGS.num_shards}")
    difficulty = synthetic.make_difficulty(FLAGS.difficulty, **{
        f.name: FLAGS[f.name].value for f in dataclasses.fields(synthetic.Difficulty)})
    from mcnn_keras import run_dir, storage  # pylint: disable=import-outside-toplevel
    storage.require_filesystem(FLAGS.output_dir)
    output_dir = run_dir.make_output_dir(resolve_user_path(FLAGS.output_dir), "output_dir")
    summary = synthetic.write_synthetic_dataset(
        output_dir, FLAGS.height, FLAGS.width, FLAGS.num_train, FLAGS.num_val,
        FLAGS.num_shards, FLAGS.seed, compression=FLAGS.compression, difficulty=difficulty)
    print(json.dumps({split: {"count": s["count"], "files": len(s["files"])}
                      for split, s in summary.items()} | {"output_dir": output_dir}))


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
