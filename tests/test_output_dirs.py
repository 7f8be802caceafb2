"""Output directories that cannot be written name their flag before any work."""

import os

import pytest

from mcnn_keras.io.output_dirs import make_output_dir


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
