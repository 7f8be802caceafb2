"""Tests of the Cell Painting-like synthetic fields (five stains, `stains="cell_painting"`).

What they pin down: the records are H x W x 5 and the manifest names the
channels; each stain's mass sits in its compartment (the renderer's ground
truth masks); the classes look different (a linear model on compartment
features separates them, and fails when every class is drawn as DMSO); a
linear model on per-channel mean and std does not (fairness, as for the
3-channel fields); the same seed gives the same bytes.

The fairness probe at any size:

    python tests/test_synthetic.py --stains=cell_painting --height=512 --width=512
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mcnn_keras.core.repo import python_path
from mcnn_keras.data import classes
from mcnn_keras.io import records
from mcnn_keras.data.synthetic import generator as synthetic
from mcnn_keras.data.synthetic.cell_painting import CELL_PAINTING_CHANNELS, STYLES
from mcnn_keras.data.synthetic.optics import smooth
from mcnn_keras.data.synthetic.probe import linear_probe_accuracy, softmax_regression

DNA, ER, RNA, AGP, MITO = range(5)
DMSO = classes.MOA_CLASSES.index(classes.DMSO)


def _render(label, seed, size=128, difficulty=None, truth=None):
    field = synthetic.render_cell_painting_field(label, size, size, np.random.default_rng(seed),
                                                 difficulty, truth=truth)
    return synthetic.to_uint8(field).astype(np.float64)  # what the records hold


def _file_bytes(directory):
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def _dilate(mask, steps):
    """`mask` grown by `steps` pixels (4-neighbourhood)."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        for axis in (0, 1):
            for shift in (1, -1):
                grown |= np.roll(out, shift, axis)
        out = grown
    return out


def _erode(mask, steps):
    return ~_dilate(~mask, steps)


def _above_background(image, truth):
    """Each channel minus its background level (the median far from every cell)."""
    outside = ~_dilate(truth["cells"], 2)
    return np.maximum(image - np.median(image[outside], axis=0), 0)


# --- The renderer and the records --------------------------------------------------


def test_channels_are_the_five_cell_painting_stains_in_order():
    assert CELL_PAINTING_CHANNELS == ("DNA", "ER", "RNA", "AGP", "Mito")
    assert synthetic.STAINS["cell_painting"].channels == CELL_PAINTING_CHANNELS
    assert set(STYLES) == set(classes.MOA_CLASSES)


@pytest.mark.parametrize("class_index", range(classes.NUM_CLASSES))
def test_field_shape_dtype_range_and_truth(class_index):
    truth = {}
    rng = np.random.default_rng(class_index)
    field = synthetic.render_cell_painting_field(class_index, 64, 128, rng, truth=truth)
    assert field.shape == (64, 128, 5) and field.dtype == np.float32
    assert 0.0 <= field.min() and field.max() <= 1.0
    # Dark background, bright cells in every stain.
    assert np.all(np.median(field, axis=(0, 1)) < np.percentile(field, 99, axis=(0, 1)))
    assert all(truth[k].shape == (64, 128) and truth[k].dtype == bool
               for k in ("nuclei", "cells", "cytoplasm"))
    assert truth["nuclei"].any() and truth["cytoplasm"].any()
    assert not truth["dmso_like"] and len(truth["phenotype"]) >= 2
    # render_field(stains=...) is the same function.
    again = synthetic.render_field(class_index, 64, 128, np.random.default_rng(class_index),
                                   stains="cell_painting")
    np.testing.assert_array_equal(field, again)


def test_field_is_a_function_of_the_generator_state_and_truth_draws_nothing():
    a = synthetic.render_cell_painting_field(3, 64, 64, np.random.default_rng(5), truth={})
    b = synthetic.render_cell_painting_field(3, 64, 64, np.random.default_rng(5))
    c = synthetic.render_cell_painting_field(3, 64, 64, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_stains_name_the_option(tmp_path):
    with pytest.raises(ValueError, match="--stains"):
        synthetic.render_field(0, 64, 64, np.random.default_rng(0), stains="jump")
    with pytest.raises(ValueError, match="--stains"):
        synthetic.write_synthetic_dataset(str(tmp_path / "x"), 64, 64, 1, 1, 1, 0,
                                          progress=False, stains="jump")
    assert not os.listdir(tmp_path)  # checked before any work


def test_records_have_five_channels_and_the_manifest_names_them(tmp_path):
    summary = synthetic.write_synthetic_dataset(str(tmp_path), 64, 128, 26, 13, 2, seed=1,
                                                compression="GZIP", progress=False,
                                                stains="cell_painting")
    assert sorted(os.listdir(tmp_path)) == [
        "manifest.json", "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
        "val-00000-of-00001.tfrecord"]
    for split, count in (("train", 26), ("val", 13)):
        examples = [e for path in summary[split]["files"] for e in records.read_examples(path)]
        assert len(examples) == count
        assert sorted(label for _, label, _ in examples) == sorted(
            list(range(classes.NUM_CLASSES)) * (count // 13))
        for image, label, meta in examples:
            assert image.shape == (64, 128, 5) and image.dtype == np.uint8
            assert np.all(image.max(axis=(0, 1)) > 50)  # every stain shows cells
            assert meta["class_name"] == classes.MOA_CLASSES[label]
    with open(tmp_path / "manifest.json") as f:
        manifest = json.load(f)
    assert manifest["stains"] == "cell_painting"
    assert manifest["channels"] == ["DNA", "ER", "RNA", "AGP", "Mito"]
    assert manifest["classes"] == list(classes.MOA_CLASSES)
    assert manifest["image_size"] == [64, 128]
    assert (manifest["height"], manifest["width"]) == (64, 128)
    assert manifest["counts"]["train"]["count"] == 26


def test_the_trainers_manifest_reader_takes_channels_classes_and_size(tmp_path):
    shards_manifest = pytest.importorskip("mcnn_keras.data.manifest")
    synthetic.write_synthetic_dataset(str(tmp_path), 128, 128, 13, 0, 1, seed=0,
                                      progress=False, stains="cell_painting")
    found = shards_manifest.read_manifest_for(str(tmp_path / "train-*.tfrecord"))
    assert found.channels == CELL_PAINTING_CHANNELS
    assert found.classes == classes.MOA_CLASSES
    assert (found.height, found.width) == (128, 128)
    first = sorted(glob.glob(str(tmp_path / "train-*.tfrecord")))[0]
    assert records.image_shape(first) == (128, 128, 5)


def test_same_seed_gives_byte_identical_files(tmp_path):
    kwargs = dict(height=64, width=64, num_train=13, num_val=13, num_shards=2,
                  progress=False, stains="cell_painting")
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        synthetic.write_synthetic_dataset(str(tmp_path / name), seed=seed, **kwargs)
    a, b, c = (_file_bytes(tmp_path / name) for name in "abc")
    assert len(a) == 4 and a == b  # 3 shards and the manifest
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)
    # Not the BBBC021-like set's pixels, whatever the seed.
    synthetic.write_synthetic_dataset(str(tmp_path / "d"), seed=4, **{
        **kwargs, "stains": "bbbc021"})
    assert _file_bytes(tmp_path / "d")["val-00000-of-00001.tfrecord"] != a[
        "val-00000-of-00001.tfrecord"]


# --- Compartments and phenotypes -------------------------------------------------------


def _compartment_numbers(label, seed):
    """Per-stain numbers of one 128 x 128 field, from the ground truth masks."""
    truth = {}
    image = _above_background(_render(label, [label, seed], truth=truth), truth)
    nuclei, cytoplasm = truth["nuclei"], truth["cytoplasm"]
    # Pure compartments: no other cell's cytoplasm over a nucleus, one pixel in.
    interior = _erode(nuclei & ~cytoplasm, 1)
    cyto = _erode(cytoplasm & ~nuclei, 1)
    near, far = cyto & _dilate(nuclei, 3), cyto & ~_dilate(nuclei, 3)
    density = {name: image[mask].mean(axis=0) + 1e-9
               for name, mask in (("interior", interior), ("cyto", cyto), ("near", near),
                                  ("far", far))}
    total = image.sum(axis=(0, 1))
    return {"nuclear_ratio": density["interior"] / density["cyto"],
            "near_ratio": density["near"] / density["far"],
            "in_nuclei": image[_dilate(nuclei, 2)].sum(0) / total,
            "in_cells": image[_dilate(truth["cells"], 2)].sum(0) / total}


@pytest.mark.parametrize("label", range(classes.NUM_CLASSES))
def test_each_stain_sits_in_its_compartment(label):
    style = STYLES[classes.MOA_CLASSES[label]]
    for seed in range(2):
        n = _compartment_numbers(label, seed)
        # DNA: in the nuclei (measured: >= 0.86 of the mass, 10x the cytoplasm's density).
        assert n["in_nuclei"][DNA] > 0.8 and n["nuclear_ratio"][DNA] > 5
        # ER and Mito: in the cytoplasm, not the nucleus (measured ER <= 0.6, Mito <= 0.08).
        assert n["nuclear_ratio"][ER] < 0.75 and n["nuclear_ratio"][MITO] < 0.2
        # ER: a band around the nucleus (measured >= 1.4) unless the class spreads it.
        if style.er != "spread":
            assert n["near_ratio"][ER] > 1.25
        # RNA: brightest in the nucleus, nucleoli or not (measured >= 1.4).
        assert n["nuclear_ratio"][RNA] > 1.2
        # Every stain's mass is in the cells (measured >= 0.75: AGP's protrusions
        # reach out of the body, the smallest cells' Mito blurs past the outline).
        assert np.all(n["in_cells"] > 0.7)


def test_dmso_er_is_perinuclear_and_its_spread_and_loss_phenotypes_show():
    def mean(label, key, channel):
        return np.mean([_compartment_numbers(label, seed)[key][channel] for seed in range(3)])
    eg5 = classes.MOA_CLASSES.index("Eg5 inhibitors")  # mitotic: ER spread, nucleoli gone
    assert mean(DMSO, "near_ratio", ER) > 2 > 1.3 > mean(eg5, "near_ratio", ER)
    assert mean(eg5, "nuclear_ratio", RNA) < mean(DMSO, "nuclear_ratio", RNA)


def _morphology_features(image, truth):
    """Per stain: mass fractions in nuclei / around them / far from them, and spottiness."""
    nuclei, cells = truth["nuclei"], truth["cells"]
    near, far = _dilate(nuclei, 3) & ~nuclei, cells & ~_dilate(nuclei, 3)
    features = []
    for channel in range(image.shape[-1]):
        x = image[..., channel]
        total = x.sum() + 1e-9
        high_pass = x - smooth(x[None].astype(np.float32), 2.0)[0]
        features += [x[nuclei].sum() / total, x[near].sum() / total, x[far].sum() / total,
                     (high_pass ** 2).mean() / (x.var() + 1e-9)]
    return features


def _morphology_probe(difficulty=None, train_per_class=20, test_per_class=10, size=64):
    """Test top-1 of logistic regression on `_morphology_features` of fields."""
    def data(num_per_class, seed):
        x, y = [], []
        for k in range(num_per_class):
            for label in range(classes.NUM_CLASSES):
                truth = {}
                image = _render(label, [seed, k, label], size, difficulty, truth) / 255
                x.append(_morphology_features(image, truth))
                y.append(label)
        return np.array(x), np.array(y)
    x_train, y_train = data(train_per_class, 1)
    x_test, y_test = data(test_per_class, 2)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-9
    weights, bias = softmax_regression((x_train - mean) / std, y_train)
    return float(np.mean(((x_test - mean) / std @ weights + bias).argmax(1) == y_test))


def test_classes_differ_in_morphology_and_not_when_all_look_like_dmso():
    # 20 + 10 fields per class at 64 x 64 (measured: 0.89; chance 0.077).
    assert _morphology_probe() > 0.6
    # The control: every field drawn as DMSO; the same features find nothing (measured 0.06).
    assert _morphology_probe(synthetic.make_difficulty(dmso_like_fraction=1.0)) < 0.2


# --- Fairness, difficulty -------------------------------------------------------------


@pytest.mark.parametrize("difficulty", ["default", "hard"])
def test_channel_mean_and_std_do_not_give_the_class_away(difficulty):
    # 60 training and 20 test fields per class (1040 fields) at 64 x 64. Measured:
    # default 0.25, hard 0.17 here; 0.30 / 0.24 at 128 x 128 (chance 0.077).
    accuracy = linear_probe_accuracy(60, 20, 64, 64, synthetic.make_difficulty(difficulty),
                                     stains="cell_painting")
    print(f"{difficulty}: logistic regression on 5-stain mean/std: {accuracy:.3f}")
    assert accuracy < 0.5


def test_non_responding_cells_are_dmso_cells_and_plates_light_five_stains(tmp_path):
    nobody = synthetic.make_difficulty(penetrance=0.0)
    for name in ("Actin disruptors", "Protein degradation", "Microtubule stabilizers"):
        label = classes.MOA_CLASSES.index(name)
        np.testing.assert_array_equal(_render(label, 3, 64, nobody), _render(DMSO, 3, 64, nobody))
    summary = synthetic.write_synthetic_dataset(str(tmp_path), 64, 64, 26, 0, 1, seed=2,
                                                progress=False, stains="cell_painting",
                                                difficulty=synthetic.make_difficulty("hard"))
    plates = {meta["plate"] for _, _, meta in records.read_examples(summary["train"]["files"][0])}
    assert len(plates) > 3  # the hard preset's plate table, five gains per plate


# --- mcnn-synthetic ---------------------------------------------------------------------


def _cli(*flags):
    return subprocess.run([sys.executable, "-m", "mcnn_keras.cli.synthetic", *flags],
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": python_path()})


def test_cli_has_a_stains_flag_and_a_bad_value_is_one_error_line(tmp_path):
    assert "--stains" in _cli("--help").stdout
    result = _cli(f"--output_dir={tmp_path / 'out'}", "--stains=jump")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: --stains=")
    assert not os.listdir(tmp_path)


def test_cli_writes_cell_painting_records(tmp_path):
    result = _cli(f"--output_dir={tmp_path}", "--stains=cell_painting", "--num_train=13",
                  "--num_val=0", "--num_shards=1")
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "manifest.json") as f:
        assert json.load(f)["channels"] == list(CELL_PAINTING_CHANNELS)
