r"""mcnn-synthetic: writes synthetic BBBC021-like TFRecord shards (train and val).

    mcnn-synthetic --output_dir=data/synthetic \
        --num_train=1300 --num_val=260 --num_shards=4 --seed=1 --compression=GZIP

Writes `train-0000i-of-0000n.tfrecord` (num_shards shards) and
`val-*.tfrecord` (max(1, num_shards // 2) shards) under --output_dir.
`--difficulty=hard` (or --penetrance, --plate_effects, --dmso_like_fraction)
makes a harder set: see mcnn_keras/data/synthetic/generator.py.
"""

import json

from mcnn_keras.cli import common, config_flags
from mcnn_keras.cli.paths import resolve_user_path
from mcnn_keras.data.synthetic.options import (SyntheticOptions, check_options,
                                               make_options_difficulty)

SECTIONS = config_flags.define_sections({"synthetic set": SyntheticOptions})


def main(argv):
    """Checks the flags (one-line ValueError naming the flag), then writes."""
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    o = check_options(SyntheticOptions(**config_flags.values(SECTIONS)))
    difficulty = make_options_difficulty(o)
    from mcnn_keras.data.synthetic import generator as synthetic  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io.output_dirs import make_output_dir  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io import storage  # pylint: disable=import-outside-toplevel
    storage.require_filesystem(o.output_dir)
    output_dir = make_output_dir(resolve_user_path(o.output_dir), "output_dir")
    summary = synthetic.write_synthetic_dataset(
        output_dir, o.height, o.width, o.num_train, o.num_val,
        o.num_shards, o.seed, compression=o.compression, difficulty=difficulty,
        stains=o.stains)
    print(json.dumps({split: {"count": s["count"], "files": len(s["files"])}
                      for split, s in summary.items()} | {"output_dir": output_dir}))


def run():
    common.run_main(main, help_sections=SECTIONS)


if __name__ == "__main__":
    run()
