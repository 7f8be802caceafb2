"""A run directory's files read back: flags.json with its resume history, metrics."""

import json

import pytest

from mcnn_keras.train import config
from mcnn_keras.train import run_dir
from mcnn_keras.train.run_dir import RunDir


def base_config(model_dir, **overrides):
    return config.TrainConfig.from_flat({"model_dir": str(model_dir), "height": 128,
                                         "width": 128, **overrides})


def test_flags_json_records_the_changes_of_each_resume(tmp_path):
    run = RunDir(str(tmp_path))
    cfg = base_config(tmp_path)
    run.write_config(cfg, {"global_batch": 8})
    run.write_config(cfg.replace(epochs=20), {"global_batch": 8}, {"epochs": (10, 20)}, 40)
    flags = run.load_flags()
    assert flags["epochs"] == 20 and flags["plan"]["global_batch"] == 8
    assert [(c["step"], c["flags"]) for c in flags["changes"]] == [(40, {"epochs": [10, 20]})]
    assert run.load_config() == cfg.replace(epochs=20)
    (tmp_path / run_dir.FLAGS_JSON).write_text("{garbage")
    with pytest.raises(ValueError, match="flags.json: not valid JSON"):
        run.load_flags()


def test_metrics_of_old_runs_read_with_the_new_key(tmp_path):
    path = tmp_path / run_dir.METRICS
    path.write_text(json.dumps({"epoch": 1, "lr": 0.1}) + "\n\n" +
                    json.dumps({"epoch": 2, "learning_rate": 0.2}) + "\n")
    assert run_dir.read_metrics(str(path)) == [{"epoch": 1, "learning_rate": 0.1},
                                               {"epoch": 2, "learning_rate": 0.2}]
