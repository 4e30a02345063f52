"""Run one benchmark child in this checkout and in another, each in a fresh process, in one run.

The scripts beside this file import it as ``from checkouts import compare_checkouts`` (as ``machine``): the peer of
a change to our own code is the code before it (``git archive <commit> | tar -x -C /tmp/base``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["CHILD_PRELUDE", "compare_checkouts"]

#: Run before every child: ``best_of(call, n)`` gives the seconds of the fastest of ``n`` calls and the last call's
#: result; ``report(out)`` prints the mapping ``out`` with the process's peak resident memory as one JSON line.
CHILD_PRELUDE = r"""
import json as _json, resource as _resource, time as _time


def best_of(call, n=3):
    best, result = float("inf"), None
    for _ in range(n):
        t0 = _time.perf_counter()
        result = call()
        best = min(best, _time.perf_counter() - t0)
    return best, result


def report(out):
    out["peak_rss_mb"] = round(_resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(_json.dumps(out))
"""


def compare_checkouts(child: str, description: str) -> None:
    """Parse ``--other ROOT`` and print what ``python -c child`` (after :data:`CHILD_PRELUDE`) prints under this
    checkout and under ``ROOT`` (``PYTHONPATH`` and working folder set to each; the last line of its errors where it
    fails)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--other", required=True, help="root of another checkout of the project (the peer)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    for label, root in (("this checkout", here), ("other", Path(args.other).resolve())):
        env = {**os.environ, "PYTHONPATH": str(root)}
        proc = subprocess.run([sys.executable, "-c", CHILD_PRELUDE + child], env=env, cwd=root, capture_output=True, text=True)
        print(label, root, proc.stdout.strip() or proc.stderr.strip().splitlines()[-1])
