"""Detector lag (physics.lag) in a run of frames: each frame's readout against the frame-lag model worked by hand
from the lag-free frames, and the noise statistics the model predicts."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import cylinder_ct, make_scene, slab_ct, small_carm

from ddsa_sim import InputError
from ddsa_sim.physics.detector import Detector
from ddsa_sim.physics.lag import lagged
from ddsa_sim.scene import render_frames, render_sequence
from ddsa_sim.scene.recording import Exposure
from ddsa_sim.scene.vessels import BolusParams

#: Siewerdsen & Jaffray (1999): first-frame lag about 2-10 %, then about 0.7, 0.4 and 0.3 %.
A_SI_LAG = (0.03, 0.007, 0.004, 0.003)
#: Lag large enough for the statistics below to resolve: weights (0.7, 0.2, 0.1) on a frame and the two before.
BIG_LAG = (0.2, 0.1)


def test_an_exposure_is_read_out_over_the_frames_after_it():
    history = [np.zeros(1)] * len(A_SI_LAG)  # a dark detector
    reads = []
    for x in [np.ones(1)] + [np.zeros(1)] * 6:  # one exposure, then dark frames
        reads.append(float(lagged(x, history, A_SI_LAG)[0]))
        history = [x, *history]
    assert reads[0] == pytest.approx(1 - sum(A_SI_LAG))
    assert reads[1:5] == pytest.approx(list(A_SI_LAG)) and reads[5:] == [0.0, 0.0]
    assert sum(reads) == pytest.approx(1.0, abs=1e-15)  # no charge lost


def test_a_bolus_run_reads_each_frame_with_the_lag_of_the_frames_before():
    kw = dict(ct=cylinder_ct(), bolus=BolusParams(velocity_mm_per_s=50.0, sigma_s=0.05))
    carm = small_carm()
    free = render_sequence(make_scene(**kw), carm, np.random.default_rng(0), 4)
    run = render_sequence(make_scene(**kw, detector=Detector(lag=BIG_LAG)), carm, np.random.default_rng(0), 4)
    # by hand: the frames of the run in time order, the mask and two frames of its scene before it
    i_mask = np.exp(-free.mask_clean.astype(np.float64))
    frames = [i_mask, i_mask, i_mask, *np.exp(-free.contrast_clean.astype(np.float64))]
    w = (1 - sum(BIG_LAG), *BIG_LAG)
    expected = [sum(wj * frames[k - j] for j, wj in enumerate(w)) for k in range(3, 7)]
    np.testing.assert_allclose(np.exp(-run.contrast_clean.astype(np.float64)), expected, rtol=1e-6)
    np.testing.assert_array_equal(run.contrast, run.contrast_clean)  # noise off, ideal detector: the expectation
    assert np.abs(run.contrast - free.contrast).max() > 0.01  # the filling lags behind
    for name in ("mask", "mask_clean", "dsa_target", "iodine_mg_per_cm2", "vessel_mask"):  # lag-free truths
        np.testing.assert_array_equal(getattr(run, name), getattr(free, name), err_msg=name)


def _flat_sequence(lag: tuple[float, ...], times: list[float | None]):
    """A 15 cm water slab, ideal photon counter, no blur, quantum noise only; 128^2 pixels."""
    scene = make_scene(slab_ct(150.0), noise=True, noise_correlation="none", exposure=Exposure(photons_per_pixel=1e5),
                       detector=Detector(mode="photon", scintillator_mm=None, lag=lag))
    f = render_frames(scene, small_carm(128, 2.5), np.random.default_rng(11), times)
    still = (f.vessel_mask == 0).all(axis=0) & (f.dsa_target == 0).all(axis=0)  # where the run sees water only
    noise = [(f.mask - f.mask_clean)[still]] + [(c - cc)[still] for c, cc in zip(f.contrast, f.contrast_clean)]
    return np.array(noise, dtype=np.float64), f


def test_lag_averages_the_noise_of_a_still_scene_and_correlates_consecutive_frames():
    # y_k = sum_j w_j x_(k-j), x independent: var y = var x sum w^2, cov(y_k, y_(k+d)) = var x sum_j w_j w_(j+d)
    w = np.array([1 - sum(BIG_LAG), *BIG_LAG])
    var_factor = np.sum(w**2)  # 0.54
    corr = [np.sum(w[:-d] * w[d:]) / var_factor for d in (1, 2)]  # 0.296, 0.130
    times = [0.1, 0.2, 0.3]
    free, _ = _flat_sequence((), times)
    noise, f = _flat_sequence(BIG_LAG, times)
    assert noise.shape[1] > 10000
    np.testing.assert_allclose(noise.var(axis=1) / free.var(axis=1), var_factor, rtol=0.05)
    c = np.corrcoef(noise)  # frames: mask, contrast 0, 1, 2
    for k in range(3):
        assert c[k, k + 1] == pytest.approx(corr[0], abs=0.03)
    for k in range(2):
        assert c[k, k + 2] == pytest.approx(corr[1], abs=0.03)
    assert c[0, 3] == pytest.approx(0.0, abs=0.03)  # three frames apart: beyond the lag
    assert np.abs(np.corrcoef(free)[np.triu_indices(4, 1)]).max() < 0.03  # without lag independent frames
    # the mean reads as without lag: charge is conserved in a still scene
    assert abs(noise.mean()) < 3 * noise.std() / np.sqrt(noise.size)


def test_a_single_frame_is_read_in_a_steady_state_so_lag_changes_only_its_noise():
    free, f_free = _flat_sequence((), [None])
    noise, f = _flat_sequence(BIG_LAG, [None])
    np.testing.assert_array_equal(f.contrast_clean, f_free.contrast_clean)
    np.testing.assert_array_equal(f.dsa_target, f_free.dsa_target)
    np.testing.assert_allclose(noise.var(axis=1) / free.var(axis=1), np.sum(np.array([0.7, 0.2, 0.1]) ** 2),
                               rtol=0.05)
    assert abs(np.corrcoef(noise)[0, 1]) < 0.03  # mask and contrast frame read after frames of their own


@pytest.mark.parametrize("lag,needle", [
    ((0.6, 0.5), "detector lag: the frame lags sum to 1.1"),
    ((-0.01,), r"detector lag: every frame lag must be a fraction in \[0, 1\)"),
    ((float("nan"),), "every frame lag must be a fraction"),
    (("a",), "detector lag must be a list of fractions"),
])
def test_bad_lag_is_a_one_line_error(lag, needle):
    with pytest.raises(InputError, match=needle):
        Detector(lag=lag)
