"""mcnn-bench: every mode prints JSON lines with sane values; a sweep writes CSV + plots.

Figures themselves come from running the benchmark (docs/PERFORMANCE.md), not from here.
"""

import csv
import json
import subprocess
import sys

import pytest

import mcnn_keras
from mcnn_keras.experiments.bench import throughput as bench
from mcnn_keras.experiments.bench import layers as bench_layers

REQUIRED = ("images_per_s", "gflops_per_s", "peak_gflops_per_s", "fraction_of_peak",
            "peak_rss_bytes", "activation_bytes", "rss_over_activations", "cpu", "height",
            "width", "batch_size", "dtype", "mode", "remat", "threads")
LAYER_FIELDS = ("layer", "shape", "gflops", "ms", "gflops_per_s", "fraction_of_peak",
                "peak_gflops_per_s", "cpu", "dtype", "batch_size", "threads")
SMALL = ["--height=128", "--width=128", "--steps=2", "--warmup_steps=1", "--peak_size=1024"]


def _bench(*args, timeout=900):
    result = subprocess.run([sys.executable, "-m", "mcnn_keras.cli.bench", *SMALL, *args],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def _assert_positive(line, names):
    for name in names:
        assert isinstance(line[name], (int, float)) and line[name] > 0, (name, line[name])


@pytest.mark.slow
@pytest.mark.parametrize("mode,dtype", [("synthetic", "float32"),
                                        ("pipeline", "mixed_bfloat16")])
def test_training_modes_print_one_line_with_the_required_fields(mode, dtype):
    (line,) = _bench(f"--mode={mode}", f"--dtype={dtype}", "--batch_size=3", "--remat=full_res")
    assert set(REQUIRED) <= set(line)
    assert (line["mode"], line["dtype"], line["batch_size"], line["remat"]) == (
        mode, dtype, 3, "full_res")
    assert (line["height"], line["width"]) == (128, 128)
    _assert_positive(line, ("images_per_s", "gflops_per_s", "peak_gflops_per_s",
                            "peak_rss_bytes", "activation_bytes", "rss_over_activations",
                            "threads"))
    assert 0 < line["fraction_of_peak"] < 2
    cost = mcnn_keras.model_cost(128, 128)
    assert line["gflops_per_s"] == pytest.approx(
        cost.training_flops * line["images_per_s"] / 1e9)
    bytes_per_value = 2 if dtype == "mixed_bfloat16" else 4
    assert line["activation_bytes"] == cost.conv_activation_bytes * 3 * bytes_per_value // 4
    assert line["rss_over_activations"] == pytest.approx(
        line["peak_rss_bytes"] / line["activation_bytes"])
    assert "avx512_bf16" in line["cpu"] or "amx_bf16" in line["cpu"] or "no bf16" in line["cpu"]


@pytest.mark.slow
def test_input_only_reports_images_per_core():
    (line,) = _bench("--mode=input_only", "--batch_size=4", "--steps=3")
    _assert_positive(line, ("images_per_s", "images_per_s_per_core", "peak_rss_bytes"))
    assert line["images_per_s_per_core"] == pytest.approx(line["images_per_s"] / line["cores"])
    assert line["mode"] == "input_only"


@pytest.mark.slow
def test_layers_mode_prints_every_conv_and_dense_layer():
    lines = _bench("--mode=layers", "--batch_size=2")
    assert [line["layer"] for line in lines][:1] == ["s1_conv1"]
    assert len(lines) == 7 * 3 + 3  # pathway convs, merge conv, two dense layers
    names = {line["layer"] for line in lines}
    assert {"s1_conv2", "s64_conv3", "mergedSummaryConv", "ip0", "ip3"} <= names
    for line in lines:
        assert set(LAYER_FIELDS) <= set(line)
        _assert_positive(line, ("gflops", "ms", "gflops_per_s", "peak_gflops_per_s"))
        assert 0 < line["fraction_of_peak"] < 2
    # Forward + weight gradient for a layer reading the image, + input gradient otherwise.
    by_name = {line["layer"]: line for line in lines}
    forward = 2 * 2 * 128 * 128 * 25
    assert by_name["s1_conv1"]["gflops"] == pytest.approx(2 * forward * 3 * 16 / 1e9)
    assert by_name["s1_conv2"]["gflops"] == pytest.approx(3 * forward * 16 * 16 / 1e9)
    assert by_name["s1_conv2"]["shape"] == "2x128x128x16 -> 16 k5"
    total = sum(line["gflops"] for line in lines)
    assert sum(line["share_of_model_flops"] for line in lines) == pytest.approx(
        total / (3 * mcnn_keras.model_cost(128, 128).forward_flops * 2 / 1e9))


@pytest.mark.slow
def test_sweep_runs_fresh_processes_and_writes_csv_and_plots(tmp_path):
    out = tmp_path / "sweep"
    lines = _bench("--batch_size=2,4", "--microbatches=2", f"--sweep_output_dir={out}",
                   timeout=1800)
    assert [line["batch_size"] for line in lines] == [2, 4]
    assert [line["microbatches"] for line in lines] == [2, 2]
    assert all(set(REQUIRED) <= set(line) for line in lines)
    with open(out / "bench.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["batch_size"]) for row in rows] == [2, 4]
    assert set(REQUIRED) <= set(rows[0])
    for name in ("throughput_vs_batch.png", "memory_vs_batch.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_info_names_the_model_and_bf16_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum\n"
                       "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert bench.cpu_info(str(cpuinfo)) == "Intel(R) Xeon(R) Platinum [amx_bf16 avx512_bf16]"
    cpuinfo.write_text("model name\t: AMD EPYC\nflags\t\t: fpu avx2\n")
    assert bench.cpu_info(str(cpuinfo)) == "AMD EPYC [no bf16]"


def test_layers_know_which_need_an_input_gradient():
    model = mcnn_keras.build_model(128, 128)
    depends = bench_layers._depends_on_weights(model)  # pylint: disable=protected-access
    assert not any(depends[f"s{s}_conv1"] for s in (1, 2, 4, 8, 16, 32, 64))
    assert depends["s1_conv2"] and depends["mergedSummaryConv"] and depends["ip3"]
    assert not depends["s2_prepool"] and depends["concat"]


def test_bad_flags_fail_with_one_line():
    for args, message in ((["--mode=nonsense"], "--mode"), (["--batch_size=8,x"], "--batch_size"),
                          (["--dtype=float16"], "--dtype=float16"), (["--height=100"], "--height"),
                          (["--batch_size=6", "--microbatches=4"], "--microbatches=4")):
        result = subprocess.run([sys.executable, "-m", "mcnn_keras.cli.bench", *args],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stderr[-2000:]
        assert message in result.stderr and "Traceback" not in result.stderr
