"""What the cerebral template costs: ``generate("cow", seed)`` for seeds 0-7, this checkout against another (e.g. the
code before a change: ``git archive <commit> | tar -x -C /tmp/base``), each in a fresh process, in one run.

Reports each seed's time, the median, the hairpins (turns over 150 deg between consecutive edges of one branch) and
the process's peak resident memory.

Run::

    python experiments/bench_cow_template.py --other /tmp/base
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, time
import numpy as np
from vessel_models import generate

times, hairpins = [], []
for seed in range(8):
    t0 = time.perf_counter()
    tree = generate("cow", seed)
    times.append(time.perf_counter() - t0)
    n = 0
    for b in np.unique(tree.branch_ids):
        idx = np.flatnonzero(tree.branch_ids == b)
        if tree.labels.get(int(b)) == "virtual" or idx.size < 3:
            continue
        d = np.diff(tree.positions_mm[idx], axis=0)
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        n += int(np.sum(np.einsum("ij,ij->i", d[:-1], d[1:]) < np.cos(np.radians(150.0))))
    hairpins.append(n)
print(json.dumps({"seconds": [round(t, 2) for t in times], "median_s": round(float(np.median(times)), 2),
                  "hairpins": hairpins,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, help="root of another checkout of the project (the peer)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    for label, root in (("this checkout", here), ("other", Path(args.other).resolve())):
        env = {**os.environ, "PYTHONPATH": str(root)}
        proc = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=root, capture_output=True, text=True)
        print(label, root, proc.stdout.strip() or proc.stderr.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
