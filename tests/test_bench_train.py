"""experiments/bench_train.py: the steady training rate read back from the run's TensorBoard log."""

from __future__ import annotations

import json
import time

import pytest


def test_rate_is_read_from_the_logged_steps_and_beats_the_whole_run(experiment_script, tmp_path):
    bench = experiment_script("bench_train.py")
    t = time.perf_counter()
    row = bench.bench_config("experiments/ddsa_cpu_small.yaml", "cpu", steps=6, warmup=2, folder=tmp_path)
    whole = time.perf_counter() - t
    # log_every = max(1, 6 // 10) = 1: every step is logged, the first at or after the warm-up is step 2
    logged = bench.scalar_wall_times(tmp_path / "ddsa_cpu_small_cpu" / "tb")
    assert [s for s, _ in logged] == list(range(1, 9))
    assert row["steps"] == 6 and row["seconds"] == pytest.approx(logged[-1][1] - logged[1][1], abs=0.01)
    # the steady loop leaves out the set-up and the final validation: faster than the run as a whole
    assert row["steps_per_s"] > 8 / whole
    # both figures are rounded to 3 decimals in the row: the hours by up to 5e-4, and the rate by up to 5e-4
    # steps/s, which moves 2800 / rate seconds by 2800 * 5e-4 / rate^2 (a loaded machine's rate can be ~1/s)
    rate = row["steps_per_s"]
    rounding_h = 5e-4 + 2800 / 3600 * 5e-4 / (rate * (rate - 5e-4))
    assert row["hours_for_max_steps"] == pytest.approx(2800 / rate / 3600, abs=rounding_h)
    assert row["parameters_m"] == pytest.approx(1.29, abs=0.01)  # 16..128 channels, 4 down-samplings
    assert row["precision"] == "float32"  # the run's own word: optim.amp is on in the config, off on the CPU


def test_cpu_bf16_rows_train_in_bfloat16_and_report_their_speedup(experiment_script, capsys, tmp_path):
    bench = experiment_script("bench_train.py")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("num_threads: 1\ndata: {crop_size: 32, patch_size: 32, batch_size: 2}\n"
                   "model: {base_channels: 4, depth: 2}\noptim: {max_steps: 100, amp_cpu: true}\n")
    assert bench.main([str(cfg), "--devices", "cpu,cpu-bf16", "--steps", "4", "--warmup", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    fp32, bf16 = result["rows"]
    assert (fp32["device"], fp32["precision"]) == ("cpu", "float32")  # the device says float32, the config not
    assert (bf16["device"], bf16["precision"]) == ("cpu", "bfloat16")
    assert result["cpu_bf16_speedup"] == {str(cfg): round(bf16["steps_per_s"] / fp32["steps_per_s"], 2)}
