"""Small TFRecord data sets for tests.

`write_indexed_dataset` stores image i as a constant image of value i (mod 256)
with label i % num_classes, so a test can see which record went where;
`write_bars_dataset` a set a model learns in a few epochs. (Random records
for benchmarks: `mcnn_keras/experiments/bench/random_records.py`.)
"""

import numpy as np

from mcnn_keras.io import records


def _write(directory, prefix, num_shards, examples):
    """(image, label, metadata) triples into `num_shards` shards, round-robin
    (`records.ShardedRecordWriter`); returns the `prefix-*` files, sorted."""
    with records.ShardedRecordWriter(str(directory), prefix, num_shards) as writer:
        for image, label, metadata in examples:
            writer.write(records.encode_example(image, label, metadata))
    return sorted(str(p) for p in directory.glob(f"{prefix}-*.tfrecord"))


def write_indexed_dataset(directory, prefix, count, num_shards, height=128, width=128,
                          num_classes=13):
    return _write(directory, prefix, num_shards, (
        (np.full((height, width, 3), i % 256, np.uint8), i % num_classes,
         {"class_name": str(i % num_classes)}) for i in range(count)))


def write_bars_dataset(directory, prefix, count, num_shards, height=128, width=128,
                       num_classes=13, seed=0, channels=3):
    """An easy learnable set: class c is a bright horizontal band at row c, in
    channel c mod `channels`."""
    rng = np.random.default_rng(seed)
    band = max(1, height // num_classes)

    def examples():
        for i in range(count):
            label = i % num_classes
            image = (rng.random((height, width, channels)) * 40).astype(np.uint8)
            image[label * band:(label + 1) * band, :, label % channels] = 220
            yield image, label, {
                "class_name": str(label), "compound": f"compound{label}",
                "concentration": "1.0", "plate": "Week1_22123", "well": "B02",
                "site": str(i % 4 + 1), "replicate": str(i % 3 + 1)}
    return _write(directory, prefix, num_shards, examples())


def bars_split_dir(directory, num_train, num_val, train_shards):
    """`directory` with train-* (seed 1) and val-* (seed 2, 2 shards) bars data."""
    write_bars_dataset(directory, "train", num_train, num_shards=train_shards, seed=1)
    write_bars_dataset(directory, "val", num_val, num_shards=2, seed=2)
    return directory


def small_run_config(data_dir, model_dir, **overrides):
    """A TrainConfig for a few fast epochs on `write_bars_dataset` data."""
    from mcnn_keras.train import config  # pylint: disable=import-outside-toplevel
    args = dict(train_files=f"{data_dir}/train-*.tfrecord",
                val_files=f"{data_dir}/val-*.tfrecord", model_dir=str(model_dir),
                height=128, width=128, batch_size=8, epochs=2, base_lr=0.02,
                warmup_epochs=0.5, verbose=0, seed=3)
    args.update(overrides)
    return config.TrainConfig.from_flat(args)


def checkpoint_weights(model_dir):
    """{name: value} of every variable (weights, momenta, step) in the latest checkpoint."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    path = tf.train.latest_checkpoint(f"{model_dir}/checkpoints")
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.split("/")[0] not in ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter")}


def one_epoch_run(tmp_path_factory, num_train, num_val, train_shards):
    """A run directory trained for one epoch on bars data (its export written)."""
    from mcnn_keras.train import training  # pylint: disable=import-outside-toplevel
    data = bars_split_dir(tmp_path_factory.mktemp("bars"), num_train, num_val, train_shards)
    run = tmp_path_factory.mktemp("run")
    training.train(small_run_config(data, run, epochs=1, tensorboard=False))
    return run
