"""What a re-run on a run directory may change: resumable flags, the same plan."""

import pytest

from mcnn_keras.train import config
from mcnn_keras.train.resume import check_plan, check_resume
from mcnn_keras.train.run_dir import RunDir


def base_config(model_dir, **overrides):
    return config.TrainConfig.from_flat({"model_dir": str(model_dir), "height": 128,
                                         "width": 128, **overrides})


def test_resume_allows_only_the_resumable_changes(tmp_path):
    assert set(config.RESUMABLE_CHANGES) <= {f.name for _, f in config.fields()}
    run = RunDir(str(tmp_path))
    cfg = base_config(tmp_path)
    assert check_resume(run, cfg) == {}  # no run yet
    run.write_config(cfg, {"global_batch": 8})
    assert check_resume(run, cfg) == {}
    assert check_resume(run, cfg.replace(epochs=20, verbose=2)) == {
        "epochs": (10, 20), "verbose": (1, 2)}
    with pytest.raises(ValueError) as error:
        check_resume(run, cfg.replace(base_lr=0.002, seed=1, epochs=20))
    message = str(error.value)
    assert "base_lr 0.001 -> 0.002" in message and "seed 0 -> 1" in message
    assert "epochs" not in message.split("(")[0]  # allowed changes are not listed as refused
    with pytest.raises(ValueError, match="this model_dir holds a 128x128 run; you asked "
                                         "for 256x256 "):
        check_resume(run, cfg.replace(height=256, width=256))


def test_resume_keeps_the_global_batch_and_steps_per_epoch(tmp_path):
    run = RunDir(str(tmp_path))
    check_plan(run, {"global_batch": 8, "steps_per_epoch": 4, "num_workers": 1})  # no run yet
    run.write_config(base_config(tmp_path), {"global_batch": 16, "steps_per_epoch": 4,
                                             "num_workers": 2})
    check_plan(run, {"global_batch": 16, "steps_per_epoch": 4, "num_workers": 2})
    with pytest.raises(ValueError, match=r"would change global_batch 16 -> 8 \(workers 2 -> 1"):
        check_plan(run, {"global_batch": 8, "steps_per_epoch": 4, "num_workers": 1})
