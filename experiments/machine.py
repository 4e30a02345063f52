"""The machine a benchmark ran on, described one way by every ``experiments/bench_*.py``.

The scripts beside this file import it as ``from machine import machine``: ``python experiments/bench_x.py``
puts this folder first on ``sys.path``, and the tests' ``experiment_script`` fixture does the same.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["machine"]


def _cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows (e.g. ``x86_64``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """``{"cpu", "cores", "python", "platform", "load_avg_1m"}``: CPU model, logical cores, Python version,
    OS string and the 1-minute load average when the benchmark started (a busy machine's figures are slower)."""
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_1m": round(os.getloadavg()[0], 2)}
