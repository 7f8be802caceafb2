"""The miniature BBBC021 tree copies the real layout; testdata/ holds one."""

import csv
import os
import re

import numpy as np
import pytest
import tifffile

from mcnn_keras.data import classes
from mcnn_keras.data.bbbc021 import fixture, metadata

FOLDER = re.compile(r"^Week\d+_\d{5}$")
FILE = re.compile(r"^Week\d+_\d{6}_[B-G]\d\d_s(\d)_w([124])[0-9A-F-]{36}\.tif$")


def check_tree(root, height, width):
    with open(os.path.join(root, metadata.IMAGE_CSV)) as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == metadata.IMAGE_COLUMNS
        rows = list(reader)
    with open(os.path.join(root, metadata.MOA_CSV)) as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == metadata.MOA_COLUMNS
        moa = {(r["compound"], float(r["concentration"])) for r in reader}
    assert any((r["Image_Metadata_Compound"], float(r["Image_Metadata_Concentration"]))
               not in moa for r in rows), "no unlabelled rows"
    assert ("DMSO", 0.0) in moa
    for row in rows:
        for channel, token in zip(metadata.CHANNELS, "124"):
            folder, name = row[f"Image_PathName_{channel}"], row[f"Image_FileName_{channel}"]
            assert FOLDER.match(folder) and folder == row["Image_Metadata_Plate_DAPI"]
            match = FILE.match(name)
            assert match and match.group(2) == token, name
            assert f"_{row['Image_Metadata_Well_DAPI']}_" in name
    first = rows[0]
    image = tifffile.imread(os.path.join(root, first["Image_PathName_DAPI"],
                                         first["Image_FileName_DAPI"]))
    assert image.dtype == np.uint16 and image.shape == (height, width)
    assert image.max() <= 4095  # 12-bit data in a 16-bit container
    return rows


def test_fixture_layout_and_counts(tmp_path):
    summary = fixture.write_fixture(str(tmp_path), 32, 48, plates=2, sites=2, seed=1,
                                    progress=False)
    rows = check_tree(str(tmp_path), 32, 48)
    assert len(rows) == summary["fields"] == 2 * 2 * (38 + 2 + 1)
    assert summary["labelled_fields"]["DMSO"] == 2 * 2 * 2
    assert sum(summary["labelled_fields"].values()) == 2 * 2 * 40
    assert sorted(os.listdir(tmp_path))[:2] == [metadata.IMAGE_CSV, metadata.MOA_CSV]
    # Every plate folder holds exactly the TIFFs the CSV names (no temporaries).
    on_disk = {(folder, name) for folder in os.listdir(tmp_path)
               if os.path.isdir(tmp_path / folder) for name in os.listdir(tmp_path / folder)}
    listed = {(r[f"Image_PathName_{c}"], r[f"Image_FileName_{c}"])
              for r in rows for c in metadata.CHANNELS}
    assert on_disk == listed


def test_fixture_is_deterministic(tmp_path):
    for name in ("a", "b"):
        fixture.write_fixture(str(tmp_path / name), 16, 16, plates=1, sites=1,
                              compounds_per_class=1, seed=7, progress=False)
    assert (tmp_path / "a" / metadata.IMAGE_CSV).read_text() == \
        (tmp_path / "b" / metadata.IMAGE_CSV).read_text()


def test_bundled_testdata_instance(testdata_dir):
    root = testdata_dir / "bbbc021"
    if not root.exists():
        pytest.fail("testdata/bbbc021 is missing (see its README.md)")
    rows = check_tree(str(root), 128, 128)
    fields, _ = metadata.read_fields(str(root))
    assert {f.moa for f in fields} == set(classes.MOA_CLASSES)
    assert all(os.path.exists(p) for f in fields for p in f.paths)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    assert size < 5e6 and len(rows) == len(fields) + 2 * 1
