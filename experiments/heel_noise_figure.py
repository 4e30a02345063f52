"""The heel effect's photon count across the field: recorded noise per detector row against SpekPy.

    python experiments/heel_noise_figure.py [--out docs/img/heel_noise.png]

An air flat field (90 kVp, 4 mm Al, anode toward the first row, 128 rows of 2.2 mm at 1020 mm, ideal
energy-integrating detector, 2000 photons per pixel on the central ray), rendered ``--renders`` times. Plots each
row's standard deviation of the recorded ``-ln`` (over its 128 pixels and the renders) against the prediction
``sqrt(mean over the row of 1 / N_q)``: ``N_q`` from SpekPy's spectrum at that row's position (its photons over the
central spectrum's, which carries the heel effect and the inverse-square law along the anode direction, times the
Swank factor ``(sum E phi)^2 / sum E^2 phi``), times each pixel's inverse-square law across and obliquity; and
against the one number per frame of the model before 2026-12-06. Prints the anode / cathode variance ratio of the
edges' 16 rows.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import spekpy as sp

from ddsa_sim.geometry import CArm
from ddsa_sim.physics.blur import BlurSettings
from ddsa_sim.physics.detector import Detector
from ddsa_sim.physics.heel import HeelSettings
from ddsa_sim.scene import Scene, render_frames
from ddsa_sim.scene.recording import Exposure, ScatterSettings
from ddsa_sim.scene.vessels import FractionVessels
from ddsa_sim.volumes import from_array

ROWS, PIXEL_MM, N0 = 128, 2.2, 2000.0


def spekpy_quanta(position_mm: float, sdd_mm: float) -> float:
    """Noise-equivalent quanta of an ideal energy-integrating pixel at ``position_mm`` toward the anode."""
    def spectrum(x_mm: float) -> tuple[np.ndarray, np.ndarray]:
        s = sp.Spek(kvp=90.0, th=12.0, dk=1.0, x=-100.0 * x_mm / sdd_mm, z=100.0)
        s.filter("Al", 4.0)
        k, phi = s.get_spectrum()
        return k, phi * (k >= 10.0)  # the simulator's spectra keep the bins from 10 keV

    k, phi = spectrum(position_mm)
    central = spectrum(0.0)[1].sum()
    return N0 * phi.sum() / central * (k * phi).sum() ** 2 / (k**2 * phi).sum() / phi.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/heel_noise.png")
    parser.add_argument("--renders", type=int, default=20)
    args = parser.parse_args()
    air = from_array(np.full((8, 8, 8), -1000.0, np.float32), np.diag([5.0, 5.0, 5.0, 1.0]), "air")
    # the mask frame alone is read: the one vessel voxel a scene needs never enters it
    vessel = FractionVessels(np.ones((1, 1, 1), np.float32), np.eye(4))
    scene = Scene(air, [vessel], heel=HeelSettings(anode="-v"), noise=True, detector=Detector(scintillator_mm=None),
                  exposure=Exposure(photons_per_pixel=N0), scatter=ScatterSettings(enabled=False),
                  blur=BlurSettings(focal_spot_mm=0.0, detector_mtf50_cycles_per_mm=None))
    carm = CArm(sensor_height=ROWS, sensor_width=ROWS, pixel_mm=PIXEL_MM)
    frames = [render_frames(scene, carm, np.random.default_rng(seed)) for seed in range(args.renders)]
    noise = np.stack([f.mask - f.mask_clean for f in frames]).astype(np.float64)  # (renders, rows, cols)
    measured = noise.std(axis=(0, 2))
    centre = (np.arange(ROWS) + 0.5 - ROWS / 2) * PIXEL_MM
    along = -centre  # toward the anode ("-v": the first row)
    sdd = carm.source_to_detector_distance
    r2 = sdd**2 + along[:, None] ** 2 + centre[None, :] ** 2
    across = np.sqrt(sdd**2 / r2) * (sdd**2 + along[:, None] ** 2) / r2  # obliquity x inverse-square across
    rows = np.arange(0, ROWS, 4)
    truth = np.sqrt([np.mean(1.0 / (spekpy_quanta(along[r], sdd) * across[r])) for r in rows])
    uniform = 1.0 / np.sqrt(frames[0].quanta_per_pixel)
    var = noise.var(axis=(0, 2))
    print(f"anode / cathode variance, 16 edge rows: {var[:16].mean() / var[-16:].mean():.3f}; "
          f"model {np.mean(1 / frames[0].quanta_image[:16]) / np.mean(1 / frames[0].quanta_image[-16:]):.3f}")
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    ax.plot(along, measured, ".", ms=3, color="0.4", label=f"recorded, per row ({args.renders} x {ROWS} pixels)")
    ax.plot(along[rows], truth, "-", color="C0", label="prediction: SpekPy at the row, cos^3 fall-off across it")
    ax.axhline(uniform, color="C3", ls="--", label="one N_q per frame (before 2026-12-06)")
    ax.set_xlabel("position on the detector toward the anode (mm)")
    ax.set_ylabel("std of recorded -ln(I/I0)")
    ax.set_title("Fewer photons toward the anode and off the central ray: more noise (90 kVp, N0 = 2000)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
