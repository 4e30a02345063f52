"""The machine a benchmark ran on, described one way by every ``experiments/bench_*.py``.

The scripts beside this file import it as ``from machine import machine``: ``python experiments/bench_x.py``
puts this folder first on ``sys.path``, and the tests' ``experiment_script`` fixture does the same.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["machine"]


#: The x86 instruction-set flags that set a CPU's float32 and bfloat16 speed (bfloat16 is slower than float32
#: without the first two: docs/benchmarks.md), in the order :func:`machine` lists them.
ISA_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def _cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` of ``/proc/cpuinfo`` (Linux), None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict:
    """``{"cpu", "cores", "isa", "onednn_max_cpu_isa", "python", "platform", "load_avg_1m"}``: CPU model (from
    ``/proc/cpuinfo``, else what :mod:`platform` knows, e.g. ``x86_64``), logical cores, which of
    :data:`ISA_FLAGS` the CPU has, the cap a benchmark put on oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA``,
    None: none), Python version, OS string and the 1-minute load average when the benchmark started (a busy
    machine's figures are slower)."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return {"cpu": _cpuinfo_field("model name") or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "isa": [f for f in ISA_FLAGS if f in flags],
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_1m": round(os.getloadavg()[0], 2)}
