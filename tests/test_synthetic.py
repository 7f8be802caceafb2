"""Tests of the synthetic data generator: determinism, records, and difficulty.

The two slow tests pin down what the synthetic set is for: global per-channel
statistics (mean, std) do not give the class away, while the M-CNN learns the
morphology to >= 95 % validation top-1 within a few minutes on 2 CPU cores.

The linear probe at any size and difficulty (about 10 minutes at full size):

    python tests/test_synthetic.py --height=1024 --width=1280 --difficulty=hard
    python tests/test_synthetic.py --stains=cell_painting     # the five-stain fields
"""

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mcnn_keras.data import manifest as shards_manifest
from mcnn_keras.core.repo import python_path
from mcnn_keras.data import classes
from mcnn_keras.io import records
from mcnn_keras.data.synthetic import generator as synthetic
from mcnn_keras.data.synthetic import difficulty as synthetic_difficulty
from mcnn_keras.data.synthetic.probe import linear_probe_accuracy

SIZE = 128
# M-CNN training run of the learnability test (measured in the report).
TRAIN_PER_CLASS, VAL_PER_CLASS = 80, 20
BATCH, STEPS, WARMUP_STEPS, LEARNING_RATE = 8, 700, 100, 0.02


def _read_split(output_dir, split):
    out = []
    for path in sorted(glob.glob(os.path.join(output_dir, f"{split}-*.tfrecord"))):
        out.extend(records.read_examples(path))
    return out


def _file_bytes(output_dir):
    return {name: open(os.path.join(output_dir, name), "rb").read()
            for name in sorted(os.listdir(output_dir))}


@pytest.mark.parametrize("class_index", range(classes.NUM_CLASSES))
def test_render_field_shape_dtype_range(class_index):
    field = synthetic.render_field(class_index, 128, 256, np.random.default_rng(class_index))
    assert field.shape == (128, 256, 3) and field.dtype == np.float32
    assert 0.0 <= field.min() and field.max() <= 1.0
    # Dark background, bright cells: the median pixel sits well below the top.
    assert np.all(np.median(field, axis=(0, 1)) < np.percentile(field, 99, axis=(0, 1)))


def test_render_field_is_a_function_of_the_generator_state():
    a = synthetic.render_field(3, 128, 128, np.random.default_rng(5))
    b = synthetic.render_field(3, 128, 128, np.random.default_rng(5))
    c = synthetic.render_field(3, 128, 128, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_render_field_is_fast():
    rng = np.random.default_rng(0)
    synthetic.render_field(0, 128, 128, rng)
    start = time.perf_counter()
    for label in range(classes.NUM_CLASSES):
        synthetic.render_field(label, 128, 128, rng)
    assert (time.perf_counter() - start) / classes.NUM_CLASSES < 0.05
    start = time.perf_counter()
    synthetic.render_field(12, 1024, 1280, rng)
    assert time.perf_counter() - start < 2.0  # ~0.35 s when the machine is idle


@pytest.mark.slow
def test_cli_output_is_byte_identical_across_processes(tmp_path):
    # Separate interpreters with different hash seeds: protobuf map order and
    # anything hash-dependent would show up here, not within one process.
    for name, hash_seed in (("a", "1"), ("b", "2")):
        subprocess.run(
            [sys.executable, "-m", "mcnn_keras.cli.synthetic", f"--output_dir={name}",
             "--num_train=13", "--num_val=13", "--num_shards=2", "--seed=3",
             "--compression=GZIP"],
            cwd=tmp_path, check=True, capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed,
                 "PYTHONPATH": python_path()})
    a, b = _file_bytes(str(tmp_path / "a")), _file_bytes(str(tmp_path / "b"))
    assert sorted(a) == ["manifest.json", "train-00000-of-00002.tfrecord",
                         "train-00001-of-00002.tfrecord", "val-00000-of-00001.tfrecord"]
    assert a == b


def test_cli_rejects_bad_size_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.synthetic", f"--output_dir={tmp_path}",
         "--height=100"], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": python_path()})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: --height/--width")
    assert not os.listdir(tmp_path)


def test_relative_output_dir_resolves_against_build_working_directory(monkeypatch):
    from mcnn_keras.cli import paths  # pylint: disable=import-outside-toplevel
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", "/home/user/work")
    assert paths.resolve_user_path("data/syn") == "/home/user/work/data/syn"
    assert paths.resolve_user_path("/abs/syn") == "/abs/syn"
    monkeypatch.delenv("BUILD_WORKING_DIRECTORY")
    assert paths.resolve_user_path("data/syn") == "data/syn"


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_dataset_is_deterministic_and_seed_dependent(tmp_path, compression):
    kwargs = dict(height=SIZE, width=SIZE, num_train=26, num_val=13, num_shards=2,
                  compression=compression, progress=False)
    synthetic.write_synthetic_dataset(str(tmp_path / "a"), seed=1, **kwargs)
    synthetic.write_synthetic_dataset(str(tmp_path / "b"), seed=1, **kwargs)
    synthetic.write_synthetic_dataset(str(tmp_path / "c"), seed=2, **kwargs)
    a, b, c = (_file_bytes(str(tmp_path / d)) for d in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a)
    if compression:
        assert all(data[:2] == records.GZIP_MAGIC for name, data in a.items()
                   if name.endswith(".tfrecord"))


def test_shards_records_labels_and_metadata(tmp_path):
    output_dir = str(tmp_path)
    summary = synthetic.write_synthetic_dataset(
        output_dir, 128, 256, num_train=39, num_val=26, num_shards=3, seed=0,
        progress=False)
    assert sorted(os.listdir(output_dir)) == [
        "manifest.json", "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord", "val-00000-of-00001.tfrecord"]
    assert summary["train"]["count"] == 39 and summary["val"]["count"] == 26
    assert summary["train"]["class_counts"] == [3] * classes.NUM_CLASSES
    assert [os.path.basename(p) for p in summary["val"]["files"]] == [
        "val-00000-of-00001.tfrecord"]
    for split, count in (("train", 39), ("val", 26)):
        examples = _read_split(output_dir, split)
        assert len(examples) == count
        labels = [label for _, label, _ in examples]
        assert np.bincount(labels, minlength=13).tolist() == [count // 13] * 13
        for image, label, meta in examples:
            assert image.shape == (128, 256, 3) and image.dtype == np.uint8
            assert image.max() > 100  # bright cells on a dark background
            name = classes.MOA_CLASSES[label]
            assert meta["class_name"] == name
            assert meta["compound"] in classes.COMPOUNDS_BY_CLASS[name]
            assert meta["plate"].startswith("Week") and meta["plate"].split("_")[1].isdigit()
            assert meta["well"][0] in "BCDEFG" and meta["site"] in "1234"
            float(meta["concentration"])
    # Train and val come from independent streams.
    train_pixels = {img.tobytes() for img, _, _ in _read_split(output_dir, "train")}
    assert not train_pixels & {img.tobytes() for img, _, _ in _read_split(output_dir, "val")}


def test_shard_of_more_shards_than_images_is_empty_but_valid(tmp_path):
    synthetic.write_synthetic_dataset(str(tmp_path), SIZE, SIZE, 2, 1, num_shards=3,
                                      seed=0, progress=False)
    counts = [len(list(records.read_examples(p)))
              for p in sorted(glob.glob(str(tmp_path / "train-*")))]
    assert counts == [1, 1, 0]


def test_manifest_names_channels_classes_and_size(tmp_path):
    summary = synthetic.write_synthetic_dataset(str(tmp_path), 128, 256, 13, 13, num_shards=2,
                                                seed=3, progress=False)
    with open(tmp_path / shards_manifest.MANIFEST) as f:
        manifest = json.load(f)
    assert manifest["stains"] == "bbbc021"
    assert manifest["channels"] == ["DAPI", "Tubulin", "Actin"]  # the BBBC021 converter's
    assert manifest["classes"] == list(classes.MOA_CLASSES) and manifest["num_classes"] == 13
    assert manifest["image_size"] == [128, 256]
    assert (manifest["height"], manifest["width"]) == (128, 256)
    assert manifest["counts"]["train"]["files"] == [
        os.path.basename(p) for p in summary["train"]["files"]]
    assert manifest["counts"]["val"]["class_counts"] == [1] * classes.NUM_CLASSES


# Hashes of today's BBBC021-like output, taken before the Cell Painting mode
# and the optics/cells refactoring: the default stains must not move a bit.
# uint8 pixels (records round to them), so float round-off below 1/510 is
# harmless; a NumPy or FFT change that flips a rounding would show up here and
# in the demo-data comparison alike.
RENDER_SHA256 = {
    "default": "6ae14a4bada2f1a4f1ce397f7ed7e02adc4bda96cd7cec74144b90d710bd5389",
    "hard": "df6fcc5a122181502b60ba7516c7ca328a4203b1455386d7281e32111b2a293d"}
HARD_RECORDS_SHA256 = "790e36aabaf4b338a5b069ec1c862639d63b4ae2632ee8d943572aac6a6c4374"


@pytest.mark.parametrize("name", sorted(RENDER_SHA256))
def test_default_stains_render_as_before(name):
    difficulty = synthetic_difficulty.DIFFICULTIES[name]
    plates = (synthetic_difficulty.make_plates(0, difficulty.plate_effects)
              if difficulty.plate_effects else [None])
    digest = hashlib.sha256()
    for label in range(classes.NUM_CLASSES):
        field = synthetic.render_field(label, 64, 96, np.random.default_rng([label, 7]),
                                       difficulty, plates[label % len(plates)])
        digest.update(synthetic.to_uint8(field).tobytes())
    assert digest.hexdigest() == RENDER_SHA256[name]


def test_default_stains_write_the_records_they_wrote_before(tmp_path):
    synthetic.write_synthetic_dataset(str(tmp_path), 64, 128, 26, 13, 2, 5, progress=False,
                                      difficulty=synthetic.make_difficulty("hard"),
                                      stains="bbbc021")
    digest = hashlib.sha256()
    for name in sorted(os.listdir(tmp_path)):
        if name.endswith(".tfrecord"):
            digest.update(name.encode())
            digest.update((tmp_path / name).read_bytes())
    assert digest.hexdigest() == HARD_RECORDS_SHA256


def test_bad_arguments_fail_with_one_line(tmp_path):
    with pytest.raises(ValueError, match="compression"):
        synthetic.write_synthetic_dataset(str(tmp_path), SIZE, SIZE, 1, 1, 1, 0,
                                          compression="ZLIB")
    with pytest.raises(ValueError, match="num_shards"):
        synthetic.write_synthetic_dataset(str(tmp_path), SIZE, SIZE, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="num_train"):
        synthetic.write_synthetic_dataset(str(tmp_path), SIZE, SIZE, -1, 1, 1, 0)


@pytest.mark.slow
def test_channel_mean_and_std_do_not_give_the_class_away():
    accuracy = linear_probe_accuracy()
    print(f"logistic regression on per-channel mean/std: {accuracy:.3f}")
    assert accuracy < 0.5


@pytest.mark.slow
def test_channel_mean_and_std_do_not_give_the_class_away_when_hard():
    accuracy = linear_probe_accuracy(difficulty=synthetic_difficulty.DIFFICULTIES["hard"])
    print(f"hard: logistic regression on per-channel mean/std: {accuracy:.3f}")
    assert accuracy < 0.5


def _dataset(output_dir, split, batch_size, shuffle_seed=None):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    files = sorted(glob.glob(os.path.join(output_dir, f"{split}-*.tfrecord")))
    ds = tf.data.TFRecordDataset(files, records.compression_type(files[0]))

    def parse(serialized):
        features = records.parse_features(serialized)
        return (records.decode_image(features, SIZE, SIZE),
                records.decode_label(features, classes.NUM_CLASSES))

    ds = ds.map(parse).cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(4096, seed=shuffle_seed).repeat()
    return ds.batch(batch_size).prefetch(2)


@pytest.mark.slow
def test_mcnn_learns_the_synthetic_classes(tmp_path):
    import keras  # pylint: disable=import-outside-toplevel
    import mcnn_keras  # pylint: disable=import-outside-toplevel
    output_dir = str(tmp_path)
    synthetic.write_synthetic_dataset(
        output_dir, SIZE, SIZE, num_train=13 * TRAIN_PER_CLASS,
        num_val=13 * VAL_PER_CLASS, num_shards=4, seed=7, progress=False)
    keras.utils.set_random_seed(0)
    model = mcnn_keras.build_model(SIZE, SIZE)
    # Without batch norm the plain M-CNN needs a warm-up: straight at 0.02 it
    # sits at chance for ~150 steps and later oscillates; cosine decay settles it.
    schedule = keras.optimizers.schedules.CosineDecay(
        LEARNING_RATE / 4, STEPS - WARMUP_STEPS, alpha=0.02,
        warmup_target=LEARNING_RATE, warmup_steps=WARMUP_STEPS)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(_dataset(output_dir, "train", BATCH, shuffle_seed=1),
              steps_per_epoch=STEPS, epochs=1, verbose=0)
    _, accuracy = model.evaluate(_dataset(output_dir, "val", 64), verbose=0)
    print(f"M-CNN val top-1 {accuracy:.3f} after {STEPS} steps of {BATCH} "
          f"in {time.perf_counter() - start:.0f} s")
    assert accuracy >= 0.95


# --- Difficulty options (penetrance, plate effects, DMSO-like fields) ------------

HARD = synthetic_difficulty.DIFFICULTIES["hard"]
DMSO = classes.MOA_CLASSES.index(classes.DMSO)
# Treated classes whose cells are placed at random, like DMSO's.
RANDOMLY_PLACED = [i for i, name in enumerate(classes.MOA_CLASSES)
                   if name != classes.DMSO and synthetic.STYLES[name].arrangement == "random"]


def _render(label, seed, difficulty=None, plate=None, truth=None, size=SIZE):
    return synthetic.render_field(label, size, size, np.random.default_rng(seed),
                                  difficulty, plate, truth)


def test_default_difficulty_reproduces_the_demo_data_byte_for_byte(tmp_path, testdata_dir):
    # testdata/synthetic/README.md's command; the options must not move a bit.
    for name, difficulty in (("none", None), ("default", synthetic.make_difficulty())):
        synthetic.write_synthetic_dataset(str(tmp_path / name), SIZE, SIZE, 182, 52, 4, 0,
                                          compression="GZIP", progress=False,
                                          difficulty=difficulty)
        demo = _file_bytes(str(testdata_dir / "synthetic"))
        written = _file_bytes(str(tmp_path / name))
        assert {k: v for k, v in written.items() if k.endswith(".tfrecord")} == {
            k: v for k, v in demo.items() if k.endswith(".tfrecord")}
        assert set(written) - set(demo) == {shards_manifest.MANIFEST}


def test_penetrance_is_the_fraction_of_treated_cells_showing_the_phenotype():
    shown, total = 0, 0
    for label in range(classes.NUM_CLASSES):
        for seed in range(6):
            half, full = {}, {}
            _render(label, [label, seed], synthetic.make_difficulty(penetrance=0.5), truth=half)
            _render(label, [label, seed], truth=full)
            if label == DMSO:  # control cells never "show" a phenotype
                assert not any(half["phenotype"]) and not any(full["phenotype"])
                continue
            assert all(full["phenotype"]) and not full["dmso_like"]
            shown, total = shown + sum(half["phenotype"]), total + len(half["phenotype"])
    assert total > 500 and 0.44 < shown / total < 0.56


def test_cells_that_do_not_respond_are_drawn_exactly_as_dmso_cells():
    none = synthetic.make_difficulty(penetrance=0.0)
    half = synthetic.make_difficulty(penetrance=0.5)
    for label in RANDOMLY_PLACED:
        truth = {}
        field = _render(label, 11, none, truth=truth)
        np.testing.assert_array_equal(field, _render(DMSO, 11, none))
        assert truth["phenotype"] and not any(truth["phenotype"])
        # At 0.5 the field is a mixture: neither all-control nor all-treated.
        mixed = _render(label, 11, half)
        assert not np.array_equal(mixed, _render(DMSO, 11, half))
        # (Same random draws as 0.5 up to the first cell that does not respond.)
        assert not np.array_equal(mixed, _render(label, 11, synthetic.make_difficulty(
            penetrance=0.999999)))


def test_dmso_like_fields_look_like_dmso_and_cap_the_accuracy():
    every = synthetic.make_difficulty(dmso_like_fraction=1.0)
    for label in range(classes.NUM_CLASSES):
        truth = {}
        np.testing.assert_array_equal(_render(label, 5, every, truth=truth),
                                      _render(DMSO, 5, every))
        assert truth["dmso_like"] == (label != DMSO) and not any(truth["phenotype"])
    some = synthetic.make_difficulty(dmso_like_fraction=0.3)
    flags = [_render_truth(label, [label, seed], some)["dmso_like"]
             for label in range(classes.NUM_CLASSES) if label != DMSO for seed in range(25)]
    assert 0.2 < np.mean(flags) < 0.4
    assert HARD.accuracy_ceiling == pytest.approx(1 - 0.005 * 12 / 13)
    assert synthetic.make_difficulty().accuracy_ceiling == 1.0


def _render_truth(label, seed, difficulty):
    truth = {}
    _render(label, seed, difficulty, truth=truth, size=64)
    return truth


def test_plate_effects_scale_brightness_by_plate_not_by_class():
    plates = synthetic_difficulty.make_plates(3, 1.0)
    assert plates == synthetic_difficulty.make_plates(3, 1.0) and len({p.name for p in plates}) == 12
    flat = synthetic_difficulty.make_plates(3, 0.0)[0].illumination(SIZE, SIZE)
    np.testing.assert_allclose(flat, 1.0)
    # The same field on two plates differs by the ratio of their illuminations.
    bright = max(plates, key=lambda p: p.gain[0])
    dim = min(plates, key=lambda p: p.gain[0])
    assert bright.gain[0] / dim.gain[0] > 1.3
    a, b = _render(4, 8, HARD, bright), _render(4, 8, HARD, dim)
    unclipped = (a > 0.02) & (a < 0.98) & (b > 0.02) & (b < 0.98)
    ratio = (bright.illumination(SIZE, SIZE) / dim.illumination(SIZE, SIZE)).transpose(1, 2, 0)
    np.testing.assert_allclose(a[unclipped] / b[unclipped], ratio[unclipped], rtol=1e-4)
    # Averaged over classes and fields, DNA brightness follows the plate's gain.
    means = {p.name: np.mean([_render(label, [label, k], HARD, p)[..., 0].mean()
                              for label in range(classes.NUM_CLASSES) for k in range(2)])
             for p in (bright, dim)}
    assert means[bright.name] / means[dim.name] > 1.2


def test_hard_records_name_their_plate_and_inactive_dose(tmp_path):
    hard_often_inactive = synthetic.make_difficulty("hard", dmso_like_fraction=0.3)
    summary = synthetic.write_synthetic_dataset(str(tmp_path), SIZE, SIZE, 52, 39, 2, seed=4,
                                                progress=False, difficulty=hard_often_inactive)
    names = {p.name for p in synthetic_difficulty.make_plates(4, HARD.plate_effects)}
    for split in ("train", "val"):
        treated = [meta for _, _, meta in _read_split(str(tmp_path), split)
                   if meta["class_name"] != classes.DMSO]
        assert all(meta["plate"] in names for meta in treated)
        # Only the DMSO-like fields have the lowest dose; the summary counts them.
        lowest = sum(meta["concentration"] == synthetic.CONCENTRATIONS[0] for meta in treated)
        assert lowest == summary[split]["dmso_like"] > 0


def test_bad_difficulty_options_name_the_flag():
    with pytest.raises(ValueError, match="--penetrance"):
        synthetic.make_difficulty(penetrance=1.5)
    with pytest.raises(ValueError, match="--dmso_like_fraction"):
        synthetic.Difficulty(dmso_like_fraction=-0.1)
    with pytest.raises(ValueError, match="--difficulty"):
        synthetic.make_difficulty("impossible")


def test_cli_difficulty_flags(tmp_path):
    env = {**os.environ, "PYTHONPATH": python_path()}
    command = [sys.executable, "-m", "mcnn_keras.cli.synthetic", "--num_train=13",
               "--num_val=0", "--num_shards=1", "--seed=4", "--difficulty=hard"]
    subprocess.run(command + [f"--output_dir={tmp_path / 'a'}", "--dmso_like_fraction=1"],
                   check=True, capture_output=True, env=env)
    names = {p.name for p in synthetic_difficulty.make_plates(4, HARD.plate_effects)}
    for _, _, meta in _read_split(str(tmp_path / "a"), "train"):
        assert meta["plate"] in names
        assert meta["concentration"] == ("0.0" if meta["class_name"] == classes.DMSO else "0.1")
    result = subprocess.run(command + [f"--output_dir={tmp_path / 'b'}", "--penetrance=2"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: --penetrance")


def _main():
    parser = argparse.ArgumentParser(description="Linear probe on per-channel mean/std.")
    parser.add_argument("--height", type=int, default=SIZE)
    parser.add_argument("--width", type=int, default=SIZE)
    parser.add_argument("--difficulty", default="default", choices=sorted(synthetic_difficulty.DIFFICULTIES))
    parser.add_argument("--train_per_class", type=int, default=60)
    parser.add_argument("--test_per_class", type=int, default=20)
    parser.add_argument("--stains", default="bbbc021", choices=sorted(synthetic.STAINS))
    args = parser.parse_args()
    start = time.perf_counter()
    accuracy = linear_probe_accuracy(args.train_per_class, args.test_per_class, args.height,
                                     args.width, synthetic.make_difficulty(args.difficulty),
                                     args.stains)
    print(json.dumps({**vars(args), "linear_probe_top1": round(accuracy, 4),
                      "chance": round(1 / classes.NUM_CLASSES, 4), "bound": 0.5,
                      "seconds": round(time.perf_counter() - start, 1)}))
    return 0 if accuracy < 0.5 else 1


if __name__ == "__main__":
    sys.exit(_main())
