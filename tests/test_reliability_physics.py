"""The -ln floor of a recorded frame: a pixel that counted no photon reports one quantum (or the
electronic noise level), as offset-corrected detectors clip; -ln stays at ln(N0), never 23.03."""

from __future__ import annotations

import numpy as np

from ddsa_sim.physics.detector import Detector
from ddsa_sim.scene.recording import record, to_neglog


def test_zero_counts_clip_to_one_quantum():
    n0 = 1.0e5
    transmission = np.full((64, 64), 0.5)
    transmission[:8] = 0.0  # a fully blocked band: expected counts 0, recorded counts 0
    transmission[8:16] = 2e-6  # 0.2 expected photons: most pixels count none
    # an ideal photon counter: quanta = N0, second moment Q = P (every photon counts once)
    rel = record(transmission, transmission, np.zeros_like(transmission), n0,
                 Detector(mode="photon", scintillator_mm=None), np.random.default_rng(0), noise=True)
    nl = to_neglog(rel)
    assert rel.min() == 1.0 / n0 and np.all(rel[:8] == 1.0 / n0)
    assert nl.max() == np.float32(np.log(n0))  # 11.51, not -ln(1e-10) = 23.03
    counted = rel[16:] * n0  # pixels that counted photons are untouched: whole counts
    assert np.allclose(counted, np.rint(counted), rtol=0, atol=1e-6) and abs(counted.mean() / (0.5 * n0) - 1) < 1e-3


def test_floor_is_the_electronic_noise_when_larger():
    n0, sigma = 2.0e4, 7.0
    det = Detector(mode="photon", scintillator_mm=None, electronic_noise_std=sigma)
    zeros = np.zeros((32, 32))
    rel = record(zeros, zeros, zeros, n0, det, np.random.default_rng(1), noise=True)
    assert np.all(rel >= sigma / n0) and np.isclose(rel.min(), sigma / n0)
    assert to_neglog(rel).max() == np.float32(np.log(n0 / sigma))
