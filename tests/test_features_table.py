"""The features table: Parquet round trip, pycytominer's layout, streaming, atomicity, bad files."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mcnn_keras.io import atomic
from mcnn_keras.io import features_table as ft


def rows(n, **extra):
    return [{"plate": "Week1_22123", "well": f"B{i:02d}", "site": i % 4 + 1,
             "compound": "taxol", "concentration": "0.3", "replicate": 1,
             "class_name": "Microtubule stabilizers", "source": f"f{i}.tif", **extra}
            for i in range(n)]


def features(n, d=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_round_trip_keeps_everything_in_pycytominer_layout(tmp_path):
    path = tmp_path / "fields.parquet"
    meta = rows(5, Metadata_Week="1")
    meta[2]["well"] = None
    meta[3]["predicted_class"] = b"Actin disruptors"
    values = features(5, 512)
    ft.write_features(path, meta, values, extra={"saved_model": "runs/x/export", "layer": 1})

    schema = pq.read_schema(path)
    names = schema.names
    assert names[:len(ft.STANDARD_COLUMNS)] == list(ft.STANDARD_COLUMNS)
    assert names[len(ft.STANDARD_COLUMNS)] == "Metadata_Week"
    assert names[-512:] == [f"MCNN_{i:04d}" for i in range(512)]
    assert all(schema.field(n).type == pa.string() for n in names if n.startswith("Metadata_"))
    assert all(schema.field(n).type == pa.float32() for n in names[-512:])

    table = ft.read_table(path)
    np.testing.assert_array_equal(table.features, values)
    assert table.feature_names == names[-512:]
    assert table.extra == {"saved_model": "runs/x/export", "layer": 1}
    md = table.metadata
    assert md["Metadata_Well"] == ["B00", "B01", "", "B03", "B04"]
    assert md["Metadata_Site"] == ["1", "2", "3", "4", "1"]
    assert md["Metadata_MoA"] == ["Microtubule stabilizers"] * 5
    assert md["Metadata_Predicted_MoA"] == ["", "", "", "Actin disruptors", ""]
    assert md["Metadata_Source"][4] == "f4.tif" and md["Metadata_Week"] == ["1"] * 5
    again_meta, again_features = ft.read_features(path)
    assert again_meta == md and np.array_equal(again_features, values)
    assert os.listdir(tmp_path) == ["fields.parquet"]  # no temporary left


def test_streaming_writer_equals_one_shot_and_bounds_row_groups(tmp_path):
    meta, values = rows(23), features(23)
    ft.write_features(tmp_path / "one.parquet", meta, values)
    with ft.FeaturesWriter(tmp_path / "chunks.parquet", rows_per_group=10) as writer:
        for start in range(0, 23, 4):
            writer.write(meta[start:start + 4], values[start:start + 4])
        assert not (tmp_path / "chunks.parquet").exists()  # appears at close
    assert pq.ParquetFile(tmp_path / "chunks.parquet").num_row_groups == 3  # 10 + 10 + 3
    one = ft.read_table(tmp_path / "one.parquet")
    chunks = ft.read_table(tmp_path / "chunks.parquet")
    assert one.metadata == chunks.metadata
    np.testing.assert_array_equal(one.features, chunks.features)


def test_empty_table_with_feature_names(tmp_path):
    with ft.FeaturesWriter(tmp_path / "empty.parquet", feature_names=["a", "b"]):
        pass
    table = ft.read_table(tmp_path / "empty.parquet")
    assert table.features.shape == (0, 2) and table.feature_names == ["a", "b"]
    with pytest.raises(ValueError, match="no rows written"):
        with ft.FeaturesWriter(tmp_path / "none.parquet"):
            pass
    assert not (tmp_path / "none.parquet").exists()


@pytest.mark.parametrize("failure", ["exception", "bad_second_batch"])
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, failure):
    path = tmp_path / "fields.parquet"
    ft.write_features(path, rows(2), features(2))
    before = path.read_bytes()
    with pytest.raises((RuntimeError, ValueError)):
        with ft.FeaturesWriter(path, rows_per_group=1) as writer:
            writer.write(rows(3), features(3, seed=1))  # row groups reach the temporary
            if failure == "exception":
                raise RuntimeError("killed")
            writer.write(rows(1), features(1, d=9))
    assert path.read_bytes() == before
    assert atomic.remove_temporaries(tmp_path) == []


@pytest.mark.parametrize("make,message", [
    (lambda: (rows(2), features(3)), "need N metadata rows and (N, D) features"),
    (lambda: ([{"colour": "red"}], features(1)), "row 0: unknown metadata key 'colour'"),
    (lambda: ([{"class_name": "a", "moa": "b"}], features(1)), "two keys give Metadata_MoA"),
    (lambda: (rows(3), np.where(np.arange(24).reshape(3, 8) == 11, np.nan, 0.0)),
     "row 1, feature 3: nan"),
    (lambda: (rows(1), np.array([["x"] * 8])), "features must be numbers"),
])
def test_bad_rows_name_the_file_and_the_culprit(tmp_path, make, message):
    path = tmp_path / "bad.parquet"
    meta, values = make()
    with pytest.raises(ValueError, match="bad.parquet: .*" + message.replace("(", r"\(")
                       .replace(")", r"\)")):
        ft.write_features(path, meta, values)
    assert not path.exists()


def test_later_batches_must_match_the_first(tmp_path):
    with pytest.raises(ValueError, match=r"row 1: column Metadata_Week is not in the first"):
        with ft.FeaturesWriter(tmp_path / "x.parquet") as writer:
            writer.write(rows(1), features(1))
            writer.write(rows(1, Metadata_Week="2"), features(1))
    with pytest.raises(ValueError, match="feature names must be unique"):
        ft.write_features(tmp_path / "x.parquet", rows(1), features(1, 2),
                          feature_names=["Metadata_A", "b"])
    assert not (tmp_path / "x.parquet").exists()


def write_raw(path, columns):
    pq.write_table(pa.table(columns), path)
    return path


def test_reads_a_foreign_pycytominer_style_table(tmp_path):
    path = write_raw(tmp_path / "cp.parquet", {
        "Metadata_Plate": ["P1", None], "Metadata_Concentration": [0.3, 1.0],
        "Cells_AreaShape_Area": [10.0, 12.5], "Nuclei_Count": pa.array([3, 4], pa.int64())})
    table = ft.read_table(path, required=("Metadata_Plate",))
    assert table.metadata == {"Metadata_Plate": ["P1", ""],
                              "Metadata_Concentration": ["0.3", "1.0"]}
    assert table.feature_names == ["Cells_AreaShape_Area", "Nuclei_Count"]
    np.testing.assert_array_equal(table.features, [[10, 3], [12.5, 4]])
    assert table.extra is None


def test_bad_files_give_one_line_naming_file_and_column(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.parquet: no such file"):
        ft.read_features(tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match="is a directory"):
        ft.read_features(tmp_path)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"compound,moa\ntaxol,x\n")
    truncated = tmp_path / "truncated.parquet"
    ft.write_features(truncated, rows(4), features(4))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    for path in (garbage, truncated):
        with pytest.raises(ValueError, match=f"{path.name}: not a readable Parquet file") as e:
            ft.read_features(path)
        assert "\n" not in str(e.value)

    good = ft.write_features(tmp_path / "good.parquet", rows(2), features(2))
    with pytest.raises(ValueError, match="good.parquet: no column Metadata_Batch"):
        ft.read_table(good, required=("Metadata_Batch",))
    cases = {
        "text.parquet": ({"Metadata_Plate": ["a"], "Area": ["big"]},
                         "column Area is string, not a number"),
        "null.parquet": ({"Metadata_Plate": ["a", "b"], "Area": [1.0, None]},
                         "column Area, row 1: empty"),
        "nan.parquet": ({"Metadata_Plate": ["a", "b"], "Area": [1.0, float("inf")]},
                        "column Area, row 1: inf"),
        "nofeatures.parquet": ({"Metadata_Plate": ["a"]}, "no feature columns"),
    }
    for name, (columns, message) in cases.items():
        with pytest.raises(ValueError, match=f"{name}: {message}"):
            ft.read_features(write_raw(tmp_path / name, columns))
