"""What the cerebral template costs: ``generate("cow", seed)`` for seeds 0-7, this checkout against another (e.g. the
code before a change: ``git archive <commit> | tar -x -C /tmp/base``), each in a fresh process, in one run.

Reports each seed's time, the median, the hairpins (turns over 150 deg between consecutive edges of one branch) and
the process's peak resident memory.

Run::

    python experiments/bench_cow_template.py --other /tmp/base
"""

from __future__ import annotations

from checkouts import compare_checkouts

CHILD = r"""
import time
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
report({"seconds": [round(t, 2) for t in times], "median_s": round(float(np.median(times)), 2), "hairpins": hairpins})
"""


def main() -> None:
    compare_checkouts(CHILD, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
