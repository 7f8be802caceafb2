"""The BBBC021 converter end to end on a layout-faithful fixture.

Shards are read back with the PyPI `tfrecord` package (not our reader) and
compared with the fixture's TIFFs processed by an independent numpy reference.
"""

import csv
import glob
import os
import subprocess
import sys

import pickle

import numpy as np
import pytest
import tifffile

from mcnn_keras.data import classes
from mcnn_keras.data.bbbc021 import convert, fixture
from mcnn_keras.data.conversion import augment
from mcnn_keras.data.conversion import job
from mcnn_keras.data.bbbc021 import options as bbbc021_options

HEIGHT, WIDTH = 64, 80


@pytest.fixture(scope="module")
def bbbc021(tmp_path_factory):
    root = tmp_path_factory.mktemp("bbbc021")
    fixture.write_fixture(str(root), HEIGHT, WIDTH, plates=2, sites=2,
                          compounds_per_class=1, seed=3, progress=False)
    return root


def labelled_rows(root):
    """Independent CSV join: {image row number: moa} and per-class counts."""
    with open(root / "BBBC021_v1_moa.csv") as f:
        moa = {(r["compound"], float(r["concentration"])): r["moa"] for r in csv.DictReader(f)}
    rows = {}
    with open(root / "BBBC021_v1_image.csv") as f:
        for row in csv.DictReader(f):
            key = (row["Image_Metadata_Compound"], float(row["Image_Metadata_Concentration"]))
            if key in moa:
                rows[row["Image_FileName_DAPI"]] = (row, moa[key])
    return rows


def options(root, out, **kwargs):
    return bbbc021_options.ConvertOptions(str(root), str(out), height=HEIGHT, width=WIDTH,
                                  num_shards=3, **kwargs)


# --- the independent reference -------------------------------------------------

def reference_map(mean, block, sigma):
    """Illumination map of one channel, written out step by step."""
    h, w = mean.shape[0] // block, mean.shape[1] // block
    low = mean.reshape(h, block, w, block).mean(axis=(1, 3))
    for axis, size in ((0, h), (1, w)):
        s = sigma / block
        r = int(np.ceil(4 * s))
        kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
        kernel /= kernel.sum()
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        padded = np.pad(low, pad, mode="reflect", reflect_type="odd")
        low = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), axis, padded)
    # Bilinear upsampling with linear extrapolation beyond the outer centres.
    def interp(values, n_full):
        t = (np.arange(n_full) + 0.5) / block - 0.5
        k = np.clip(np.floor(t).astype(int), 0, len(values) - 2)
        return values[k] * (1 - (t - k)) + values[k + 1] * (t - k)
    rows = np.stack([interp(low[:, j], mean.shape[0]) for j in range(w)], axis=1)
    full = np.stack([interp(rows[i], mean.shape[1]) for i in range(mean.shape[0])])
    floor = np.percentile(full[full > 0], 0.02)
    return np.maximum(full, floor) / floor


def reference_images(root, files_by_plate):
    """{DAPI file name: uint8 H x W x 3} for the given plates' fields."""
    result = {}
    for plate, rows in files_by_plate.items():
        stacks = [[tifffile.imread(root / r[f"Image_PathName_{c}"] / r[f"Image_FileName_{c}"])
                   .astype(np.float64) for c in ("DAPI", "Tubulin", "Actin")] for r in rows]
        stacks = np.array(stacks)  # fields, 3, H, W
        channels = []
        for c in range(3):
            illum = reference_map(stacks[:, c].mean(axis=0), 16 if min(HEIGHT, WIDTH) >= 128 else 8,
                                  500 * HEIGHT / 1024)
            corrected = stacks[:, c] / illum
            grid = corrected[:, 2::4, 2::4]
            lo, hi = np.percentile(grid, 0.1), np.percentile(grid, 99.9)
            channels.append(np.clip((corrected - lo) / (hi - lo), 0, 1))
        images = np.rint(np.stack(channels, axis=-1) * 255).astype(np.uint8)
        for row, image in zip(rows, images):
            result[row["Image_FileName_DAPI"]] = image
    return result


# The PyPI `tfrecord` package registers the same protobuf symbols as
# TensorFlow, so the two cannot share a process: it reads in a child process.
_READER = """
import pickle, sys
from tfrecord import reader
out = [[{k: (v if isinstance(v, bytes) else v.tolist()) for k, v in ex.items()}
        for ex in reader.tfrecord_loader(path, None)] for path in sys.argv[1:]]
sys.stdout.buffer.write(pickle.dumps(out))
"""


def read_with_tfrecord_package(*paths):
    """Examples (dicts of bytes / int lists) of each shard, read without TensorFlow."""
    result = subprocess.run([sys.executable, "-c", _READER, *map(str, paths)],
                            capture_output=True, check=True, timeout=120)
    examples = pickle.loads(result.stdout)
    return examples[0] if len(paths) == 1 else examples


# --- tests ---------------------------------------------------------------------

def test_counts_and_pixels_match_an_independent_reading(bbbc021, tmp_path):
    manifest = convert.convert(options(bbbc021, tmp_path), progress=False)
    rows = labelled_rows(bbbc021)
    expected = {name: 0 for name in classes.MOA_CLASSES}
    for _, moa in rows.values():
        expected[moa] += 1
    assert manifest["counts"]["per_class"] == expected
    assert manifest["counts"]["unlabelled_rows"] == 4  # 1 unlabelled well x 2 sites x 2 plates
    per_split = manifest["counts"]["per_split"]
    assert per_split["train"]["fields"] + per_split["val"]["fields"] == len(rows)

    by_plate = {}
    for row, _ in rows.values():
        by_plate.setdefault(row["Image_Metadata_Plate_DAPI"], []).append(row)
    reference = reference_images(bbbc021, by_plate)
    dapi_of = {(r["Image_Metadata_Plate_DAPI"], r["Image_Metadata_Well_DAPI"],
                name.split("_s")[1][0]): name for name, (r, _) in rows.items()}
    seen, diffs = 0, []
    shards = sorted(glob.glob(str(tmp_path / "*.tfrecord")))
    for shard, examples in zip(shards, read_with_tfrecord_package(*shards)):
        assert len(examples) == manifest["counts"]["per_shard"][os.path.basename(shard)]["records"]
        for ex in examples:
            meta = {k: bytes(ex[k]).decode() for k in ("plate", "well", "site", "class_name")}
            name = dapi_of[(meta["plate"], meta["well"], meta["site"])]
            row, moa = rows[name]
            assert meta["class_name"] == moa
            assert int(ex["label"][0]) == classes.MOA_CLASSES.index(moa)
            image = np.frombuffer(bytes(ex["image"]), np.uint8).reshape(HEIGHT, WIDTH, 3)
            diffs.append(np.abs(image.astype(int) - reference[name].astype(int)))
            seen += 1
    assert seen == len(rows)
    diffs = np.stack(diffs)
    assert diffs.max() <= 1 and diffs.mean() < 0.01, (diffs.max(), diffs.mean())
    assert not glob.glob(str(tmp_path / "*.tmp-*"))


def test_resume_skips_finished_shards_and_rewrites_missing_ones(bbbc021, tmp_path):
    convert.convert(options(bbbc021, tmp_path), progress=False)
    shards = sorted(glob.glob(str(tmp_path / "train-*.tfrecord")))
    mtimes = {p: os.stat(p).st_mtime_ns for p in shards}
    content = open(shards[1], "rb").read()
    os.remove(shards[1])
    convert.convert(options(bbbc021, tmp_path), progress=False)
    assert open(shards[1], "rb").read() == content
    for p in (shards[0], shards[2]):
        assert os.stat(p).st_mtime_ns == mtimes[p]
    with pytest.raises(ValueError, match="different options"):
        convert.convert(options(bbbc021, tmp_path, seed=5), progress=False)


def test_bad_file_mid_job_leaves_no_partial_shard(bbbc021, tmp_path):
    """A file that breaks after the statistics pass: the shard being written
    is abandoned (no temporary left), earlier shards stay byte-identical."""
    import shutil
    root = tmp_path / "in"
    shutil.copytree(bbbc021, root)
    out = tmp_path / "out"
    convert.convert(options(root, out), progress=False)
    shards = sorted(glob.glob(str(out / "*.tfrecord")))
    before = {p: open(p, "rb").read() for p in shards}
    victim_shard = shards[0]
    example = read_with_tfrecord_package(victim_shard)[0]
    rows = labelled_rows(root)
    row = next(r for r, _ in rows.values()
               if r["Image_Metadata_Well_DAPI"] == bytes(example["well"]).decode()
               and r["Image_Metadata_Plate_DAPI"] == bytes(example["plate"]).decode()
               and f"_s{bytes(example['site']).decode()}_" in r["Image_FileName_DAPI"])
    bad = root / row["Image_PathName_Tubulin"] / row["Image_FileName_Tubulin"]
    data = open(bad, "rb").read()
    open(bad, "wb").write(data[: len(data) // 2])
    os.remove(victim_shard)
    with pytest.raises(ValueError, match="truncated") as error:
        convert.convert(options(root, out), progress=False)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
    assert not os.path.exists(victim_shard)
    assert not glob.glob(str(out / "*.tmp-*")) and not glob.glob(str(out / ".*.tmp-*"))
    for p in shards[1:]:
        assert open(p, "rb").read() == before[p]


def test_skip_counts_bad_fields(bbbc021, tmp_path):
    import shutil
    root = tmp_path / "in"
    shutil.copytree(bbbc021, root)
    rows = labelled_rows(root)
    name, (row, moa) = sorted(rows.items())[0]
    os.remove(root / row["Image_PathName_Actin"] / row["Image_FileName_Actin"])
    manifest = convert.convert(options(root, tmp_path / "out", on_bad_file="skip"),
                               progress=False)
    assert manifest["counts"]["skipped_fields"] == 1
    assert "file not found" in manifest["skipped"][0]["error"]
    assert sum(manifest["counts"]["per_class"].values()) == len(rows) - 1
    with pytest.raises(ValueError, match=row["Image_FileName_Actin"]):
        convert.convert(options(root, tmp_path / "out2"), progress=False)
    assert not glob.glob(str(tmp_path / "out2" / "*.tfrecord"))


def test_loco_all_folds_hold_out_each_compound_once(bbbc021, tmp_path):
    manifest = convert.convert(options(bbbc021, tmp_path, split="loco", fold="all",
                                       drop_dmso=True), progress=False)
    rows = labelled_rows(bbbc021)
    compounds = sorted({r["Image_Metadata_Compound"] for r, moa in rows.values()
                        if moa != "DMSO"})
    assert [f["fold_name"] for f in manifest["folds"]] == compounds
    for fold in manifest["folds"]:
        fold_dir = tmp_path / fold["dir"]
        train = glob.glob(str(fold_dir / "train-*.tfrecord"))
        val = glob.glob(str(fold_dir / "val-*.tfrecord"))
        examples = read_with_tfrecord_package(*train, *val)
        seen = [{bytes(ex["compound"]).decode() for ex in shard} for shard in examples]
        train_compounds, val_compounds = set().union(*seen[:len(train)]), set().union(*seen[len(train):])
        assert val_compounds == {fold["fold_name"]}
        assert not train_compounds & val_compounds
        assert train_compounds | val_compounds == set(compounds)


def test_dataset_b_with_two_workers_has_no_zero_corners(bbbc021, tmp_path):
    """Real worker processes; dataset B crops have no zero-filled corner."""
    manifest = convert.convert(options(bbbc021, tmp_path, split="plate", dataset="B",
                                       workers=2, rotation_step=45), progress=False)
    side = augment.crop_size(HEIGHT, WIDTH)
    assert manifest["image_size"] == [side, side]
    assert manifest["records_per_field"] == {"train": 16, "val": 1}
    corners = []
    train = glob.glob(str(tmp_path / "train-*.tfrecord"))
    for examples in read_with_tfrecord_package(*train):
        for ex in examples:
            image = np.frombuffer(ex["image"], np.uint8).reshape(side, side, 3)
            corners.append([image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]])
    corners = np.array(corners)
    assert len(corners) == manifest["counts"]["per_split"]["train"]["records"]
    # A zero-filled corner would be 0 in all three channels; real pixels never
    # are here (the DAPI/actin background sits above the 0.1st percentile).
    assert not np.any(np.all(corners == 0, axis=-1))


def test_binary_reports_one_line_error(bbbc021, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.convert_bbbc021",
         f"--bbbc021_dir={bbbc021}", f"--output_dir={tmp_path}", "--progress=false"],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "expected 1024x1280" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not glob.glob(str(tmp_path / "*.tfrecord"))


def test_dataset_a_writes_the_shape_preserving_dihedral_variants(bbbc021, tmp_path):
    """Non-square fields get identity, both mirrors and the 180 degree rotation."""
    from mcnn_keras.io import records  # pylint: disable=import-outside-toplevel
    manifest = convert.convert(options(bbbc021, tmp_path, dataset="A"), progress=False)
    assert manifest["records_per_field"] == {"train": 4, "val": 1}
    square = bbbc021_options.ConvertOptions("in", "out", dataset="A", height=WIDTH, width=WIDTH)
    assert job.variants_per_field(square, True) == 8  # square fields: the full D4
    by_field = {}
    for path in glob.glob(str(tmp_path / "train-*.tfrecord")):
        for image, label, meta in records.read_examples(path):
            key = (meta["plate"], meta["well"], meta["site"])
            by_field.setdefault(key, []).append((image, label))
    assert len(by_field) * 4 == manifest["counts"]["per_split"]["train"]["records"]
    for variants in by_field.values():
        assert len(variants) == 4 and len({label for _, label in variants}) == 1
        found = {v.tobytes() for v, _ in variants}
        base = variants[0][0]
        # Whichever variant came first, the group is closed under both mirrors.
        for transform in (np.fliplr, np.flipud, lambda x: np.flipud(np.fliplr(x))):
            assert transform(base).tobytes() in found
