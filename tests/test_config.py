"""The configuration is the single source of the training and conversion flags."""

import dataclasses
import json

from absl import flags
import pytest

from cli_util import defined_flags
from mcnn_keras.train import config
from mcnn_keras.train import run_dir
from mcnn_keras.data.bbbc021.options import ConvertOptions
from mcnn_keras.cli import config_flags
from mcnn_keras.core.options import check_fields


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


# Every binary but mcnn-train (above): its options dataclasses (module, class
# name) and the flags it defines by hand (the converters' shared ones).
BINARY_OPTIONS = {
    "evaluate": ([("mcnn_keras.serve.evaluation_options", "EvaluateOptions")], ()),
    "export": ([("mcnn_keras.export.options", "ExportOptions")], ()),
    "synthetic": ([("mcnn_keras.data.synthetic.options", "SyntheticOptions")], ()),
    "bbbc021_fixture": ([("mcnn_keras.data.bbbc021.fixture_options", "FixtureOptions")], ()),
    "launch": ([("mcnn_keras.train.launch_options", "LaunchOptions")], ()),
    "scaling_model": ([("mcnn_keras.experiments.scaling_options", "ScalingModelOptions")], ()),
    "bench": ([("mcnn_keras.experiments.bench.options", "BenchOptions")], ()),
    "ttt": ([("mcnn_keras.experiments.ttt.options", "TTTOptions")], ()),
    "profile": ([("mcnn_keras.profiling.options", "ProfileOptions")], ()),
    "predict": ([("mcnn_keras.serve.predict.options", "PredictOptions")], ()),
    "convert_bbbc021": ([("mcnn_keras.data.bbbc021.options", "ConvertOptions")],
                        ("progress", "staging_dir")),
    "convert_images": ([("mcnn_keras.data.conversion.options", "ImagesOptions")],
                       ("progress", "staging_dir")),
}


def test_every_binary_is_covered():
    import pathlib  # pylint: disable=import-outside-toplevel
    cli = pathlib.Path(config_flags.__file__).parent
    binaries = {p.stem for p in cli.glob("*.py") if "\ndef run():" in p.read_text()}
    assert binaries == set(BINARY_OPTIONS) | {"train"}


@pytest.mark.parametrize("binary", sorted(BINARY_OPTIONS))
def test_every_option_of_a_binary_has_a_flag_and_every_flag_an_option(binary):
    """No hand-written flag: a field has a flag (same default), a flag a field."""
    import importlib  # pylint: disable=import-outside-toplevel
    classes, by_hand = BINARY_OPTIONS[binary]
    defined, _ = defined_flags(f"mcnn_keras.cli.{binary}")
    fields = [f for module, name in classes
              for f in dataclasses.fields(getattr(importlib.import_module(module), name))]
    assert set(defined) == {f.name for f in fields} | set(by_hand)
    for f in fields:
        default = None if f.metadata.get("required") else f.default
        if isinstance(default, tuple):
            default = list(default)
        assert defined[f.name] == default, f.name
        assert f.metadata.get("help"), f.name


def test_shared_values_have_one_definition():
    """A value two binaries take has the rules of one field (mcnn-train's)."""
    from mcnn_keras.experiments.bench.options import BenchOptions  # pylint: disable=import-outside-toplevel
    from mcnn_keras.experiments.ttt.options import TTTOptions  # pylint: disable=import-outside-toplevel
    train = {name: field for name, field in ((f.name, f) for _, f in config.fields())}
    bench = {f.name: f for f in dataclasses.fields(BenchOptions)}
    ttt = {f.name: f for f in dataclasses.fields(TTTOptions)}
    for name in ("intra_op_threads", "inter_op_threads"):
        assert bench[name].metadata == train[name].metadata
    for name in ("height", "width", "dtype", "remat", "train_files"):
        assert bench[name].metadata["choices"] == train[name].metadata["choices"]
        assert bench[name].metadata["minimum"] == train[name].metadata["minimum"]
    for name in ("height", "width", "dtype", "train_files", "val_files"):
        assert ttt[name].metadata["choices"] == train[name].metadata["choices"]
        assert ttt[name].metadata["minimum"] == train[name].metadata["minimum"]
    with pytest.raises(ValueError, match="--dtype=float16: expected one of"):
        check_fields(BenchOptions(dtype=("float32", "float16")))
    with pytest.raises(ValueError, match="--remat=some: expected one of"):
        check_fields(BenchOptions(remat=("some",)))


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
    ({"num_classes": -1}, "--num_classes=-1: must be >= 0"),
    ({"channels": -2}, "--channels=-2: must be >= 0"),
    ({"class_names": "a,b,a"}, "a name occurs twice"),
    ({"max_lr": float("nan")}, "--max_lr=nan: must be a finite number"),
    ({"height": 100, "width": 128}, "--height/--width: image height 100"),
    ({"num_classes": 3, "class_names": "a,b"}, "--class_names has 2 names"),
    ({"tf_config_from": "slurm"}, "--tf_config_from=slurm needs --strategy=multi_worker"),
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
