"""experiments/bench_vessel_gan.py: the vessel GANs' steady step rate per precision, each row in a process of its own."""

from __future__ import annotations

import json

import pytest

TINY = ("device: cpu\nnum_threads: 1\namp_cpu: true\n"
        "data: {shape: [16, 16, 16], spacing_mm: 1.0, mode: crop, val_fraction: 0.25}\n"
        "net: {kind: wgan, latent_dim: 8, base_channels: 4, max_channels: 8}\n"
        "optim: {batch_size: 2, n_critic: 1, max_steps: 500}\n")


def test_rate_is_read_from_the_logged_generator_steps(experiment_script, tmp_path):
    bench = experiment_script("bench_vessel_gan.py")
    (tmp_path / "tiny.yaml").write_text(TINY)
    row = bench.bench_config(str(tmp_path / "tiny.yaml"), "cpu", steps=4, warmup=2, folder=str(tmp_path))
    logged = bench.scalar_wall_times(tmp_path / "tiny_cpu" / "tb", "loss/generator")
    assert [s for s, _ in logged] == list(range(1, 7))  # every step logged; the timing starts at step 2
    assert row["steps"] == 4 and row["seconds"] == pytest.approx(logged[-1][1] - logged[1][1], abs=0.01)
    assert row["precision"] == "float32"  # the device says float32, whatever the config says


def test_rows_per_precision_with_their_memory_and_speedup(experiment_script, capsys, tmp_path):
    bench = experiment_script("bench_vessel_gan.py")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    assert bench.main([str(cfg), "--devices", "cpu,cpu-bf16", "--steps", "4", "--warmup", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    fp32, bf16 = result["rows"]
    assert (fp32["device"], fp32["precision"]) == ("cpu", "float32")
    assert (bf16["device"], bf16["precision"]) == ("cpu", "bfloat16")
    for row in (fp32, bf16):
        assert 100 < row["peak_rss_mb"] < 8000  # megabytes (ru_maxrss counts KiB on Linux) of a process with torch
    assert result["cpu_bf16_speedup"] == {str(cfg): round(bf16["steps_per_s"] / fp32["steps_per_s"], 2)}
