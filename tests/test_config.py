"""The configuration is the single source of the training and conversion flags."""

import dataclasses
import json

from absl import flags
import pytest

from cli_util import defined_flags
from mcnn_keras import config, run_dir
from mcnn_keras.bbbc021.options import ConvertOptions
from mcnn_keras.cli import config_flags


def own_flags(module_name):
    return {f.name for f in flags.FLAGS.get_flags_for_module(module_name)}


def test_every_train_field_has_a_flag_and_every_flag_a_field():
    from mcnn_keras.cli import train  # pylint: disable=import-outside-toplevel
    fields = {f.name for _, f in config.fields()}
    assert own_flags(train.__name__) == fields
    assert sum(len(names) for _, names in train.SECTIONS) == len(fields)
    assert [title for title, _ in train.SECTIONS] == list(config.SECTIONS)
    for _, field in config.fields():  # same default and help
        flag = flags.FLAGS[field.name]
        assert flag.default == field.default, field.name
        assert flag.help.endswith(field.metadata["help"]), field.name


def test_every_conversion_option_has_a_flag_and_every_flag_an_option():
    defined, _ = defined_flags("mcnn_keras.cli.convert_bbbc021")
    options = {f.name for f in dataclasses.fields(ConvertOptions)}
    assert set(defined) == options | {"progress", "staging_dir"}
    assert defined["bbbc021_dir"] is None  # required: no silent default
    assert defined["num_shards"] == ConvertOptions().num_shards


def test_generated_flags_parse_into_the_config_sections():
    values = flags.FlagValues()
    groups = config_flags.define_sections(config.SECTIONS, flag_values=values,
                                          module_name="test")
    values(["prog", "--batch_size=16", "--dtype=mixed_bfloat16", "--noshuffle",
            "--warmup_epochs=2.5", "--strategy=multi_worker_mirrored"])
    cfg = config.TrainConfig.from_flat(config_flags.values(groups, values))
    assert cfg.schedule.batch_size == 16 and cfg.schedule.warmup_epochs == 2.5
    assert cfg.model.dtype == "mixed_bfloat16" and cfg.data.shuffle is False
    assert cfg.runtime.strategy == "multi_worker_mirrored"
    with pytest.raises(flags.IllegalFlagValueError):
        values(["prog", "--dtype=float64"])


def test_flat_round_trip_and_unknown_fields():
    cfg = config.TrainConfig.from_flat({"batch_size": 4, "model_dir": "x", "seed": 3})
    assert config.TrainConfig.from_flat(cfg.flat()) == cfg
    assert cfg.replace(seed=5).runtime.seed == 5 and cfg.runtime.seed == 3
    with pytest.raises(ValueError, match="unknown configuration field.*nonsense"):
        config.TrainConfig.from_flat({"nonsense": 1})


@pytest.mark.parametrize("change, message", [
    ({"batch_size": -1}, "--batch_size=-1: must be >= 0"),  # 0 is auto
    ({"epochs": -1}, "--epochs=-1: must be >= 1"),
    ({"base_lr": 0.0}, "--base_lr=0.0: must be > 0"),
    ({"collective_timeout_s": -5.0}, "--collective_timeout_s=-5.0: must be >= 0"),
    ({"keep_checkpoints": 0}, "--keep_checkpoints=0: must be >= 1"),
    ({"num_classes": 0}, "--num_classes=0: must be >= 1"),
    ({"max_lr": float("nan")}, "--max_lr=nan: must be a finite number"),
    ({"height": 100, "width": 128}, "--height/--width: image height 100"),
    ({"num_classes": 3, "class_names": "a,b"}, "--class_names has 2 names"),
])
def test_validation_names_the_flag(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        config.validate(config.TrainConfig().replace(**change))


def test_class_names_default_to_bbbc021_and_can_be_given():
    assert config.DataConfig().class_name_list()[-1] == "DMSO"
    assert config.DataConfig(num_classes=2, class_names="live, dead").class_name_list() == [
        "live", "dead"]


def test_a_run_directory_reads_its_config_back_old_and_new(tmp_path):
    cfg = config.TrainConfig.from_flat({"model_dir": str(tmp_path), "batch_size": 4,
                                        "height": 128, "width": 128})
    (tmp_path / run_dir.FLAGS_JSON).write_text(json.dumps({**cfg.flat(), "global_batch": 8}))
    run = run_dir.RunDir(str(tmp_path))
    assert run.load_config() == cfg and run.load_flags()["global_batch"] == 8
    # flags.json of the first version: class names as a list, a removed field.
    old = {**cfg.flat(), "class_names": ["a", "b"], "num_classes": 2,
           "final_weights_npz": "", "global_batch": 8}
    (tmp_path / run_dir.FLAGS_JSON).write_text(json.dumps(old))
    assert run.class_names() == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="flags.json not found"):
        run_dir.RunDir(str(tmp_path / "nothing")).load_config()
