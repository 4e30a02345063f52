"""experiments/machine.py: the one description of the machine that every benchmark records."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest


def test_machine_names_the_cpu_model_not_only_the_architecture(experiment_script):
    described = experiment_script("machine.py").machine()
    assert described["cores"] == os.cpu_count() and described["python"] == platform.python_version()
    assert described["load_avg_1m"] >= 0
    cpuinfo = Path("/proc/cpuinfo")
    if "model name" not in (cpuinfo.read_text() if cpuinfo.exists() else ""):
        pytest.skip("no model name in /proc/cpuinfo (not Linux, or an ARM kernel): nothing more to name")
    # platform.processor() says "x86_64" or "" on Linux hosts; the model name says which CPU it was
    assert described["cpu"] not in ("", platform.machine(), platform.processor())


@pytest.mark.parametrize("script", ["bench_cli.py", "bench_gpu.py", "bench_train.py", "bench_compile.py"])
def test_every_benchmark_uses_the_shared_description(experiment_script, script):
    module = experiment_script(script)  # loading resolves its `from machine import machine`, beside it
    assert module.machine is sys.modules["machine"].machine


def test_machine_records_the_instruction_sets_that_set_bfloat16_speed(experiment_script, monkeypatch):
    module = experiment_script("machine.py")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    described = module.machine()
    assert described["onednn_max_cpu_isa"] == "AVX2"  # a capped run says so beside its figures
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), None)
    if flags is None:
        pytest.skip("no flags line in /proc/cpuinfo (not x86 Linux)")
    assert described["isa"] == [f for f in module.ISA_FLAGS if f in flags]
