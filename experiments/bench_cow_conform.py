"""What conforming the cerebral template to a head costs: ``place_cerebral`` on a builtin head (the similarity alone,
the registration before) and then ``conform_cerebral`` (each vessel into its compartment, what the scene builder
does), in the same run, for ``--seeds``; the compartments' maps once per head (the builder keeps them per patient);
wall time (best of ``--repeats``) and, in a separate call, peak traced memory (tracemalloc). No peer places a vessel
template (DeepDRR and DiffDRR have none).

Run::

    python experiments/bench_cow_conform.py --ct builtin:head-phantom-1 --seeds 0 1 2 3 --repeats 2
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np


def _best_and_peak(call, repeats: int) -> tuple[float, float]:
    """Best wall time (s) of ``repeats`` calls, and the peak traced memory (MB) of one more."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    call()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return best, peak


def main() -> None:
    from ddsa_sim.scene.builder import _anatomy, _intracranial, load_patient
    from ddsa_sim.scene.conform import TISSUE_HU, cerebral_compartments, conform_cerebral
    from ddsa_sim.scene.placement import body_mask, place_cerebral
    from ddsa_sim.scene.spec import CTSpec
    from vessel_models import generate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ct", default="builtin:head-phantom-1")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(4)))
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    patient = load_patient(CTSpec(args.ct))
    ct, intracranial = _anatomy(patient), _intracranial(patient)

    def maps():
        return cerebral_compartments(ct, intracranial, body_mask(ct, TISSUE_HU))

    maps_s, maps_mb = _best_and_peak(maps, args.repeats)
    print(f"compartment maps (once per head)  {maps_s:.2f} s; peak traced {maps_mb:.0f} MB")
    compartments = maps()
    rows = {"similarity alone": ([], []), "similarity + conform": ([], [])}
    for seed in args.seeds:
        tree = generate("cow", seed)

        def similarity(tree=tree, seed=seed):
            return tree.transformed(place_cerebral(tree.metadata, intracranial, ct, np.random.default_rng(seed)))

        def conformed(similarity=similarity):
            return conform_cerebral(similarity(), compartments, ct.affine, ct.shape)

        for name, call in (("similarity alone", similarity), ("similarity + conform", conformed)):
            best, peak = _best_and_peak(call, args.repeats)
            rows[name][0].append(best)
            rows[name][1].append(peak)
    for name, (times, peaks) in rows.items():
        t = np.array(times)
        print(f"{name:33s} {t.min():.2f}-{t.max():.2f} s, median {np.median(t):.2f} s per tree; "
              f"peak traced {max(peaks):.0f} MB")


if __name__ == "__main__":
    main()
