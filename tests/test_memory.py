"""The analytic memory model and `--batch_size=auto` (mcnn_keras/model/memory.py)."""

import json
import logging
import subprocess
import sys

import pytest

from mcnn_keras.train import config
from mcnn_keras.model import memory
from mcnn_keras.model.topology import model_cost

GB = 1e9


def test_activation_bytes_are_fig2_halved_in_bf16_and_shrink_with_remat():
    fig2 = model_cost(1024, 1280).conv_activation_bytes * 32
    assert memory.activation_bytes(1024, 1280, 32) == fig2
    assert fig2 / GB == pytest.approx(10.95, abs=0.01)
    assert memory.activation_bytes(1024, 1280, 32, "mixed_bfloat16") == fig2 // 2
    # The full-resolution pathway: 3 x 16 channels at 1024 x 1280, 74 % of the total;
    # recomputed, it costs one image's worth.
    full_res = 3 * 16 * 1024 * 1280 * 4
    assert full_res / model_cost(1024, 1280).conv_activation_bytes == pytest.approx(0.736, abs=1e-3)
    assert memory.activation_bytes(1024, 1280, 32, remat="full_res") == \
        fig2 - 31 * full_res
    assert memory.activation_bytes(1024, 1280, 32, remat="all") < \
        memory.activation_bytes(1024, 1280, 32, remat="full_res")
    with pytest.raises(ValueError, match="remat must be one of"):
        memory.activation_bytes(128, 128, 1, remat="half")
    with pytest.raises(ValueError, match="dtype must be one of"):
        memory.activation_bytes(128, 128, 1, "float16")


def test_the_estimate_covers_the_measured_peaks():
    # Engineering notes section 7: mcnn-train's peak RSS at 1024 x 1280 (GB); then
    # mcnn-bench bf16 batch 2 and mcnn-train at 128 x 128, batch 429 (memory.py).
    for size, batch, dtype, measured in (
            (1024, 16, "float32", 9.9), (1024, 32, "float32", 17.0),
            (1024, 32, "mixed_bfloat16", 9.7), (1024, 64, "mixed_bfloat16", 18.3),
            (1024, 2, "mixed_bfloat16", 2.32), (128, 429, "float32", 3.90)):
        width = size * 5 // 4 if size == 1024 else size
        estimate = memory.estimate_peak_bytes(size, width, batch, dtype) / GB
        assert measured <= estimate <= 1.15 * measured, (batch, dtype, estimate)
    # mcnn-bench in micro-batches at 1024 x 1280 (docs/PERFORMANCE.md).
    for batch, dtype, parts, measured in (
            (16, "float32", 2, 6.49), (16, "float32", 4, 4.76), (64, "float32", 4, 11.06),
            (64, "float32", 2, 17.94), (128, "mixed_bfloat16", 8, 9.44)):
        estimate = memory.estimate_peak_bytes(1024, 1280, batch, dtype, "none", parts) / GB
        assert measured <= estimate <= 1.15 * measured, (batch, dtype, parts, estimate)


@pytest.mark.parametrize("height,width", [(1024, 1280), (256, 320), (128, 128)])
def test_pick_is_the_largest_batch_within_the_budget(height, width):
    picks = {}
    for dtype in memory.BYTES_PER_VALUE:
        for remat in memory.REMAT_MODES:
            for budget in (8 * GB, 22 * GB, 64 * GB):
                batch = memory.pick_batch_size(height, width, dtype, remat, budget)
                assert memory.estimate_peak_bytes(height, width, batch, dtype, remat) <= budget
                assert memory.estimate_peak_bytes(height, width, batch + 1, dtype,
                                                  remat) > budget
                picks[dtype, remat, budget] = batch
    for dtype in memory.BYTES_PER_VALUE:
        for remat in memory.REMAT_MODES:  # more memory, larger batches
            assert picks[dtype, remat, 8 * GB] < picks[dtype, remat, 22 * GB] < \
                picks[dtype, remat, 64 * GB]
        for budget in (8 * GB, 22 * GB, 64 * GB):  # remat picks more
            assert picks[dtype, "none", budget] < picks[dtype, "full_res", budget] <= \
                picks[dtype, "all", budget]
    # bf16 halves the activations and the scaled image, not the uint8 batches
    # (with remat=all, these weigh most).
    for remat, low in (("none", 1.7), ("full_res", 1.7), ("all", 1.3)):
        ratio = picks["mixed_bfloat16", remat, 64 * GB] / picks["float32", remat, 64 * GB]
        assert low <= ratio <= 2.0


def test_the_issue_targets_fit_22_gb_with_remat_only():
    assert memory.pick_batch_size(1024, 1280, "float32", "none", 22 * GB) < 64
    assert memory.pick_batch_size(1024, 1280, "float32", "full_res", 22 * GB) >= 64
    assert memory.pick_batch_size(1024, 1280, "mixed_bfloat16", "full_res", 22 * GB) >= 128


@pytest.mark.parametrize("dtype", list(memory.BYTES_PER_VALUE))
def test_micro_batches_pick_larger_multiples_within_the_budget(dtype):
    for budget in (8 * GB, 22 * GB):
        whole = memory.pick_batch_size(1024, 1280, dtype, "none", budget)
        for count in (2, 4, 8):
            batch = memory.pick_batch_size(1024, 1280, dtype, "none", budget, count)
            assert batch % count == 0 and batch > whole
            assert memory.estimate_peak_bytes(1024, 1280, batch, dtype, "none", count) <= budget
            assert memory.estimate_peak_bytes(1024, 1280, batch + count, dtype, "none",
                                              count) > budget
    # One micro-batch's activations: batch 16 in 2 costs what batch 8 does, plus
    # the summed gradients, the micro-batched step's constant and the other 8
    # images' uint8 bytes.
    extra = memory.estimate_peak_bytes(1024, 1280, 16, dtype, "none", 2) - \
        memory.estimate_peak_bytes(1024, 1280, 8, dtype)
    fixed = 4 * model_cost(1024, 1280).parameters + memory.MICROBATCH_BYTES
    assert fixed < extra < fixed + 1.5 * 8 * memory.UINT8_BATCH_COPIES * 1024 * 1280 * 3


def test_too_small_a_budget_fails_with_one_line():
    with pytest.raises(ValueError, match="not even one 1024x1280 image fits the memory budget "
                       "of 1.00 GB"):
        memory.pick_batch_size(1024, 1280, "float32", "none", 1 * GB)


def _tf_config(index, hosts):
    return json.dumps({"cluster": {"worker": [f"{h}:{2222 + i}" for i, h in enumerate(hosts)]},
                       "task": {"type": "worker", "index": index}})


def test_default_budget_is_memtotal_minus_a_margin_per_worker_on_the_host(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       25165824 kB\nMemAvailable:    1000000 kB\n")
    total = 25165824 * 1024
    budget, why = memory.default_budget_bytes(str(meminfo), environ={})
    assert budget == pytest.approx(0.85 * total) and "MemTotal 25.8 GB minus 15%" in why
    two_here = {"TF_CONFIG": _tf_config(1, ["127.0.0.1", "127.0.0.1", "other"])}
    assert memory.workers_on_this_host(two_here) == 2
    assert memory.workers_on_this_host({"TF_CONFIG": _tf_config(2, ["a", "a", "b"])}) == 1
    budget, why = memory.default_budget_bytes(str(meminfo), environ=two_here)
    assert budget == pytest.approx(0.85 * total / 2) and "/ 2 workers on this host" in why
    small = tmp_path / "small"
    small.write_text("MemTotal:       4194304 kB\n")  # 4 GiB: the 2 GiB floor applies
    assert memory.default_budget_bytes(str(small), environ={})[0] == 2 * 2**30


def test_resolve_replaces_auto_only_and_logs_why(caplog, tmp_path):
    cfg = config.TrainConfig().replace(height=1024, width=1280, channels=3, batch_size=8)
    assert memory.resolve_memory(cfg) is cfg
    auto = cfg.replace(batch_size=0, memory_budget_gb=22.0, dtype="mixed_bfloat16",
                       remat="full_res")
    with caplog.at_level(logging.INFO, logger="mcnn_keras.model.memory"):
        resolved = memory.resolve_memory(auto)
    batch = memory.pick_batch_size(1024, 1280, "mixed_bfloat16", "full_res", 22 * GB)
    assert resolved.schedule.batch_size == batch and resolved.replace(batch_size=0) == auto
    assert f"--batch_size=auto: {batch} images per replica (1024x1280, mixed_bfloat16, " \
        "remat full_res)" in caplog.text
    assert "within the 22.00 GB budget (--memory_budget_gb)" in caplog.text
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       25165824 kB\n")
    by_default = memory.resolve_memory(auto.replace(memory_budget_gb=0.0), str(meminfo), {})
    assert by_default.schedule.batch_size == memory.pick_batch_size(
        1024, 1280, "mixed_bfloat16", "full_res", 0.85 * 25165824 * 1024)


def test_micro_batches_auto_picks_the_fewest_that_fit(caplog):
    cfg = config.TrainConfig().replace(height=1024, width=1280, channels=3, batch_size=64,
                                       memory_budget_gb=22.0, microbatches=0)
    with caplog.at_level(logging.INFO, logger="mcnn_keras.model.memory"):
        resolved = memory.resolve_memory(cfg)
    parts = resolved.model.microbatches
    assert parts == memory.fewest_microbatches(1024, 1280, "float32", "none", 64, 22 * GB)
    assert parts > 1 and 64 % parts == 0
    assert memory.estimate_peak_bytes(1024, 1280, 64, "float32", "none", parts) <= 22 * GB
    assert memory.estimate_peak_bytes(1024, 1280, 64, "float32", "none", parts // 2) > 22 * GB
    assert f"--microbatches=auto: {parts} micro-batches of {64 // parts} images" in caplog.text
    small = cfg.replace(batch_size=8)  # fits whole
    assert memory.resolve_memory(small).model.microbatches == 1
    both = memory.resolve_memory(cfg.replace(batch_size=0))  # auto and auto: whole batches
    assert both.model.microbatches == 1 and both.schedule.batch_size == \
        memory.pick_batch_size(1024, 1280, "float32", "none", 22 * GB)
    with pytest.raises(ValueError, match="--microbatches=auto: --batch_size=64 does not fit"):
        memory.resolve_memory(cfg.replace(memory_budget_gb=1.0))


def test_a_batch_over_the_budget_is_warned_with_the_count_that_fits(caplog):
    cfg = config.TrainConfig().replace(height=1024, width=1280, channels=3, batch_size=64,
                                       memory_budget_gb=22.0)
    with caplog.at_level(logging.INFO, logger="mcnn_keras.model.memory"):
        assert memory.resolve_memory(cfg) is cfg
    parts = memory.fewest_microbatches(1024, 1280, "float32", "none", 64, 22 * GB)
    assert "--batch_size=64 (1024x1280, float32, remat none, micro-batches 1) needs about" \
        in caplog.text and f"--microbatches={parts} fits (the same update)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mcnn_keras.model.memory"):
        memory.resolve_memory(cfg.replace(microbatches=parts))
    assert "needs about" not in caplog.text


@pytest.mark.slow
def test_train_with_batch_size_auto_runs_and_logs_its_choice(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mcnn_keras.cli.train", "--batch_size=auto",
         "--memory_budget_gb=4", "--height=128", "--width=128", "--epochs=1",
         "--steps_per_epoch=1", "--val_files=", f"--model_dir={tmp_path / 'run'}",
         "--verbose=0", "--tensorboard=false"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    batch = memory.pick_batch_size(128, 128, "float32", "none", 4 * GB)
    assert f"--batch_size=auto: {batch} images per replica (128x128, float32, remat none)" \
        in result.stderr
    flags_json = json.loads((tmp_path / "run" / "flags.json").read_text())
    assert flags_json["batch_size"] == batch and flags_json["plan"]["global_batch"] == batch


def test_train_flags_take_auto_and_remat():
    from absl import flags  # pylint: disable=import-outside-toplevel
    from mcnn_keras.cli import config_flags  # pylint: disable=import-outside-toplevel
    values = flags.FlagValues()
    groups = config_flags.define_sections(config.SECTIONS, flag_values=values,
                                          module_name="test")
    values(["prog", "--batch_size=auto", "--memory_budget_gb=4", "--remat=full_res"])
    cfg = config.TrainConfig.from_flat(config_flags.values(groups, values))
    assert (cfg.schedule.batch_size, cfg.schedule.memory_budget_gb, cfg.model.remat) == (
        0, 4.0, "full_res")
    values(["prog", "--microbatches=auto"])
    assert values.microbatches == 0
    values(["prog", "--batch_size=16"])
    assert values.batch_size == 16 and values["batch_size"].default == 8
    for bad in ("--batch_size=some", "--remat=half"):
        with pytest.raises(flags.IllegalFlagValueError):
            values(["prog", bad])


@pytest.mark.slow
def test_training_builds_the_remat_model_with_the_batch_it_picked(tmp_path):
    import keras  # pylint: disable=import-outside-toplevel
    from mcnn_keras.train import training  # pylint: disable=import-outside-toplevel

    class Seen(keras.callbacks.Callback):
        layers = []

        def on_train_batch_begin(self, batch, logs=None):
            Seen.layers = [layer.name for layer in self.model.layers]

    cfg = config.TrainConfig().replace(
        height=128, width=128, epochs=1, steps_per_epoch=1, val_files="",
        model_dir=str(tmp_path / "run"), tensorboard=False, verbose=0,
        batch_size=0, memory_budget_gb=1.5, remat="full_res")
    summary = training.train(cfg, extra_callbacks=[Seen()])
    batch = memory.pick_batch_size(128, 128, "float32", "full_res", 1.5 * GB)
    assert summary["global_batch"] == batch
    assert batch > memory.pick_batch_size(128, 128, "float32", "none", 1.5 * GB)
    assert "pathways" in Seen.layers  # the recomputing model trained


def test_five_stains_cost_input_memory_and_a_few_weights():
    three = memory.estimate_peak_bytes(1024, 1280, 8)
    five = memory.estimate_peak_bytes(1024, 1280, 8, channels=5)
    # The inputs grow by 5/3 (the uint8 copies and the scaled float image);
    # the weights by 4 copies of 10 400 parameters; activations not at all.
    inputs = memory.input_bytes(1024, 1280, 8, channels=5) - memory.input_bytes(1024, 1280, 8)
    assert inputs == 2 * 8 * 1024 * 1280 * (4 + memory.UINT8_BATCH_COPIES)
    weights = memory.WEIGHT_COPIES * 4 * 10_400
    assert five - three == pytest.approx(memory.ACTIVATION_OVERHEAD * inputs + weights)
