"""BBBC021 CSV reading, the MoA join and its error messages."""

import collections

import pytest

from mcnn_keras.data.bbbc021 import fixture, metadata


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("bbbc021")
    summary = fixture.write_fixture(str(root), 16, 16, plates=2, sites=2,
                                    compounds_per_class=1, progress=False)
    return root, summary


def test_join_keeps_labelled_rows(tree):
    root, summary = tree
    fields, unlabelled = metadata.read_fields(str(root))
    expected = summary["labelled_fields"]  # {class: fields} as the fixture wrote them
    per_class = collections.Counter(f.moa for f in fields)
    assert set(per_class) <= set(expected)
    assert {name: per_class[name] for name in expected} == expected
    assert all(expected.values())  # every class present: the comparison is not vacuous
    assert unlabelled == 4
    assert {f.site for f in fields} == {"1", "2"}
    assert all(p.endswith(".tif") for f in fields for p in f.paths)
    assert fields[0].metadata()["plate"].startswith("Week1_")
    no_dmso, _ = metadata.read_fields(str(root), drop_dmso=True)
    assert len(no_dmso) == len(fields) - summary["labelled_fields"]["DMSO"]


def test_concentrations_join_by_value(tmp_path):
    path = tmp_path / "moa.csv"
    path.write_text("compound,concentration,moa\ntaxol,3,Microtubule stabilizers\n")
    assert metadata.read_moa(str(path)) == {("taxol", 3.0): "Microtubule stabilizers"}


def _rewrite(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize("csv_name, old, new, message", [
    (metadata.IMAGE_CSV, "Replicate,", "Replica,", "missing column(s) Replicate"),
    (metadata.MOA_CSV, "Actin disruptors", "Actin disruptor", "unknown mechanism-of-action"),
    (metadata.MOA_CSV, ",0.1,", ",lots,", "is not a number"),
    (metadata.IMAGE_CSV, "_s1_w1", "_x1_w1", "cannot parse the site"),
])
def test_bad_csv_fails_with_one_line_naming_file_and_row(tmp_path, tree, csv_name, old,
                                                         new, message):
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(tree[0], root)
    _rewrite(root / csv_name, old, new)
    with pytest.raises(metadata.BBBC021Error) as error:
        metadata.read_fields(str(root))
    text = str(error.value)
    assert str(root / csv_name) in text and message in text and "\n" not in text


def test_an_image_row_listed_twice_is_refused_naming_both_rows(tmp_path, tree):
    root = tmp_path / "copy"
    root.mkdir()
    for name in (metadata.IMAGE_CSV, metadata.MOA_CSV):
        (root / name).write_text((tree[0] / name).read_text())
    lines = (root / metadata.IMAGE_CSV).read_text().splitlines()
    (root / metadata.IMAGE_CSV).write_text("\n".join(lines + [lines[3]]) + "\n")
    with pytest.raises(metadata.BBBC021Error) as error:
        metadata.read_fields(str(root))
    text, image_csv = str(error.value), root / metadata.IMAGE_CSV
    assert text.startswith(f"{image_csv}:{len(lines) + 1}: ") and f"{image_csv}:4 " in text
    assert "twice" in text and "\n" not in text


def test_missing_csv(tmp_path):
    with pytest.raises(metadata.BBBC021Error, match="file not found"):
        metadata.read_fields(str(tmp_path))
