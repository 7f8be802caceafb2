"""Random full-size TFRecords for the benchmarks (speed does not depend on content)."""


def write_records(directory, count, height, width, shards):
    """Random full-size uint8 images: speed does not depend on content."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from mcnn_keras.io import records  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    with records.ShardedRecordWriter(directory, "train", shards) as writer:
        for i in range(count):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            writer.write(records.encode_example(image, i % 13))
