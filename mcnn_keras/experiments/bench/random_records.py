"""Random TFRecords for the benchmarks: the schema of `io/records`, random pixels.

Reading, decoding and training speed do not depend on what the images show,
so the benchmarks (`mcnn-bench`'s pipeline and input-only modes, the
`tools/bench_*.py` runs of `mcnn-train`) read random uint8 images with labels
round-robin over the classes. Each shard is written in one stream
(`records.write_shard`): one image in memory at a time, whatever the count.

Usage:

    files = write_random_records("data", height=1024, width=1280, count=64, num_shards=8)
    # data/train-00000-of-00008.tfrecord ... : `--train_files=data/train-*.tfrecord`
"""

import os


def write_random_records(directory, height, width, count, num_shards=8, prefix="train",
                         channels=3):
    """`count` records of random height x width x channels uint8 images (record i: label
    i mod num_classes, pixels a function of i) in min(num_shards, count) shards
    `<prefix>-*.tfrecord` of `directory`, record i in shard i mod shards (as
    `records.ShardedRecordWriter`); returns the files."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io import records  # pylint: disable=import-outside-toplevel
    from mcnn_keras.data.classes import MOA_CLASSES  # pylint: disable=import-outside-toplevel
    num_classes = len(MOA_CLASSES)

    def example(i):
        image = np.random.default_rng(i).integers(0, 256, (height, width, channels),
                                                          dtype=np.uint8)
        return records.encode_example(image, i % num_classes)

    os.makedirs(directory, exist_ok=True)
    num_shards = max(1, min(num_shards, count))
    files = []
    for shard in range(num_shards):
        path = os.path.join(directory, records.shard_name(prefix, shard, num_shards))
        records.write_shard(path, (example(i) for i in range(shard, count, num_shards)))
        files.append(path)
    return files
