"""Output paths that cannot be written name their flag before any work."""

import os

import pytest

from mcnn_keras.io.output_dirs import check_output_file, make_output_dir
from cli_util import assert_one_line_error, run_binary


def test_output_dirs_that_are_files_or_read_only_name_the_flag(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(ValueError, match=rf"--output_dir={afile}: exists and is not a dir"):
        make_output_dir(str(afile), "output_dir")
    with pytest.raises(ValueError, match="--model_dir=.*afile/sub: cannot create it"):
        make_output_dir(str(afile / "sub"), "model_dir")
    assert afile.read_text() == "mine"
    if os.path.isdir("/proc/1"):  # exists, but nobody (root included) may create files there
        with pytest.raises(ValueError, match="--model_dir=/proc/1: cannot write there"):
            make_output_dir("/proc/1", "model_dir")
    nested = tmp_path / "a" / "b"
    assert make_output_dir(str(nested), "output_dir") == str(nested)
    assert nested.is_dir() and not os.listdir(nested)  # the write test left nothing


def test_output_files_that_are_directories_or_unwritable_name_the_flag(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(ValueError, match=rf"--plot={tmp_path}: is a directory"):
        check_output_file(str(tmp_path), "plot")
    with pytest.raises(ValueError, match=rf"--plot={afile}/p.png: directory {afile}: "
                                         "exists and is not a directory"):
        check_output_file(str(afile / "p.png"), "plot")
    with pytest.raises(ValueError, match=rf"--plot={afile}/sub/p.png: directory "
                                         rf"{afile}/sub: cannot create it"):
        check_output_file(str(afile / "sub" / "p.png"), "plot")
    assert afile.read_text() == "mine"
    if os.path.isdir("/proc/1"):  # nobody (root included) may create files there
        with pytest.raises(ValueError, match="--output_csv=/proc/1/p.csv: directory "
                                             "/proc/1: cannot write there"):
            check_output_file("/proc/1/p.csv", "output_csv")
    assert check_output_file("s3://bucket/p.png", "plot") == "s3://bucket/p.png"
    nested = tmp_path / "a" / "b" / "p.png"
    assert check_output_file(str(nested), "plot") == str(nested)
    assert nested.parent.is_dir() and not os.listdir(nested.parent)  # nothing written
    assert check_output_file(str(afile), "plot") == str(afile)  # an existing file: replaced
    assert afile.read_text() == "mine"  # ... by the work, not by the check


# --- The binaries check before any work (tracker issue 25, item 6) -----------------

def test_bench_refuses_a_sweep_output_dir_that_is_a_file_before_the_sweep(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    result = run_binary("mcnn_keras.cli.bench", "--height=128", "--width=128", "--steps=1",
                        "--warmup_steps=0", "--peak_size=64", "--batch_size=1,2",
                        f"--sweep_output_dir={afile}")
    assert_one_line_error(result, f"--sweep_output_dir={afile}: exists and is not a directory")
    assert result.stdout == ""  # no configuration was measured
    assert afile.read_text() == "mine" and os.listdir(tmp_path) == ["afile"]


def test_scaling_model_refuses_a_plot_that_is_a_directory_before_the_report(tmp_path):
    directory = tmp_path / "scaling.png"
    directory.mkdir()
    result = run_binary("mcnn_keras.cli.scaling_model", "--paper_table1",
                        f"--plot={directory}", timeout=120)
    assert_one_line_error(result, f"--plot={directory}: is a directory")
    assert result.stdout == ""  # no row printed: nothing was predicted
    assert not os.listdir(directory)


def test_bbbc021_fixture_refuses_an_output_dir_that_is_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    result = run_binary("mcnn_keras.cli.bbbc021_fixture", f"--output_dir={afile}",
                        "--plates=1", timeout=120)
    assert_one_line_error(result, f"--output_dir={afile}: exists and is not a directory")
    assert afile.read_text() == "mine" and os.listdir(tmp_path) == ["afile"]
