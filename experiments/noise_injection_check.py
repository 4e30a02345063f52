"""Does the training's noise injection match the exported noise? Std ratio per sample and blur sigma.

    python experiments/noise_injection_check.py [--samples 6] [--photons-scale 1.0] [--sigma 0.3 0.5]

Renders ``--samples`` samples of ``experiments/ddsa_cpu_small_data.yaml`` (its detector, spectrum,
exposure and effects; the builtin chest CT instead of the slabs, which need
``experiments/prepare_chest_slabs.py``) through the exporter's own path, and compares on the body
pixels (clean mask part above 1) the recorded noise ``contrast - contrast_clean`` with the noise the
training injects (``training.noise_injection``: ``Poisson(N0 exp(-m))`` at the sample's own N0 times
``--photons-scale``, then the Gaussian blur of each sigma, 0 = none, the noise part only): the ratio of their
root-mean-square values. Prints one line per sample and sigma, and the quanta per incident photon of
the detector at the sample's kVp (``physics.detector.flat_field_quanta``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from ddsa_sim.export.config import config_from_dict
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.sample import CTCache, render_sample
from ddsa_sim.physics.detector import Detector, flat_field_quanta
from ddsa_sim.physics.spectra import spectrum_at_kvp
from ddsa_sim.training.noise_injection import blur_per_sample, poisson_log_noise

DATA_CONFIG = Path(__file__).parent / "ddsa_cpu_small_data.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--photons-scale", type=float, default=1.0)
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.3, 0.5])
    args = parser.parse_args()
    data = yaml.safe_load(DATA_CONFIG.read_text())
    data["cts"] = [{"path": "builtin:chest-ct", "labels": "builtin:chest-ct-labels"}]
    data["count"] = args.samples
    specs = plan_dataset(config_from_dict(data, where=str(DATA_CONFIG)))
    cache = CTCache(1)
    g = torch.Generator().manual_seed(0)
    ratios: dict[float, list[float]] = {s: [] for s in args.sigma}
    for spec in specs:
        a = render_sample(spec, cache)
        recorded = (a["contrast"] - a["contrast_clean"]).astype(np.float64)
        m = torch.from_numpy((a["contrast_clean"] - a["dsa_target"]).astype(np.float32))[None, None]
        body = m[0, 0].numpy() > 1.0
        k = flat_field_quanta(spectrum_at_kvp(spec.kvp, spec.filter_al_mm, 2.0), Detector().response, 1.0)
        n0 = torch.tensor([spec.photons_per_pixel * args.photons_scale])
        noisy = poisson_log_noise(m, n0, g)
        line = [f"#{spec.index} kVp {spec.kvp:.0f} N0 {spec.photons_per_pixel:.3g} quanta/N0 {k:.3f}"]
        for sigma in args.sigma:
            noise = (blur_per_sample(noisy - m, torch.tensor([sigma])) if sigma > 0 else noisy - m)[0, 0].numpy()
            r = float(np.sqrt(np.mean(noise[body] ** 2) / np.mean(recorded[body] ** 2)))
            ratios[sigma].append(r)
            line.append(f"sigma {sigma}: injected/recorded rms {r:.3f}")
        print("; ".join(line))
    for sigma, rs in ratios.items():
        print(f"sigma {sigma}: ratio {min(rs):.3f}-{max(rs):.3f}, mean {np.mean(rs):.3f} (photons x {args.photons_scale})")


if __name__ == "__main__":
    main()
