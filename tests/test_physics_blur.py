"""Focal-spot and detector blur against independent truths: a focal spot made of many point sources
rendered one by one, and the MTF measured from a line spread function."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import SHARP, cylinder_ct, make_scene, small_carm, y_tree

from ddsa_sim import InputError
from ddsa_sim.geometry import CArm
from ddsa_sim.physics.blur import (
    CSI_MTF50_CYCLES_PER_MM,
    FWHM_PER_SIGMA,
    BlurSettings,
    detector_sigma_mm,
    focal_spot_sigma_mm,
    gaussian_blur,
    support_radius_px,
)
from ddsa_sim.projector import Projector, ProjectorVolume
from ddsa_sim.scene import render_triplet

PIXEL_MM = 0.025
FOCAL_SPOT_MM = 0.6


def _wire(offset_toward_source_mm: float) -> ProjectorVolume:
    """A 0.15 mm wire along world z, ``offset`` mm from the isocenter toward the source (alpha = beta = 0)."""
    dens = np.zeros((21, 3, 20), np.float32)
    dens[3:18] = 1.0  # 0.15 mm wide: several pixels, so that shifted copies do not alias
    aff = np.diag([0.01, 1.0, 1.0, 1.0])
    aff[:3, 3] = [-0.1, -1.0, -10.0]
    probe = CArm()
    aff[:3, 3] -= offset_toward_source_mm * probe.principal_ray  # toward the source = against the beam
    return ProjectorVolume.single_material("wire", dens, aff, "water")


def _profile(vol: ProjectorVolume, carm: CArm) -> np.ndarray:
    img = Projector([vol], method="siddon").march(carm, "wire")[..., 0]
    return img.mean(axis=0)  # (W,), the wire runs along the detector rows


def _variance_mm2(profile: np.ndarray) -> float:
    u = np.arange(profile.size) * PIXEL_MM
    w = profile / profile.sum()
    mean = (w * u).sum()
    return float((w * (u - mean) ** 2).sum())


@pytest.mark.parametrize("offset_mm", [0.0, 150.0])
def test_focal_spot_blur_of_a_wire_matches_the_magnification_formula(offset_mm):
    """A Gaussian focal spot as 81 point sources (the whole C-arm shifted, the image shifted back onto
    the fixed detector): the wire's profile widens by sigma_f (M - 1), M = SDD / z, at the isocenter
    and 150 mm nearer the source; the model's blur of the sharp profile widens it as much. (Pixel by
    pixel the point sources' sum shows a comb: each shifts the image by a non-integer 0.925 px.)"""
    base = CArm(sensor_height=2, sensor_width=480, pixel_mm=PIXEL_MM)
    vol = _wire(offset_mm)
    sharp = _profile(vol, base)
    # which way the image moves on the detector when the C-arm moves by +1 pixel along world x
    on_det = base.source_mm + base.source_to_detector_distance * base.principal_ray
    step = base.project(np.array([on_det + [PIXEL_MM, 0, 0]]))[0, 0] - base.project(np.array([on_det]))[0, 0]
    assert abs(abs(step) - 1.0) < 1e-6
    sigma_f = FOCAL_SPOT_MM / FWHM_PER_SIGMA
    ks = np.arange(-40, 41)
    w = np.exp(-0.5 * (ks * PIXEL_MM / sigma_f) ** 2)
    w /= w.sum()
    spot_var = float((w * (ks * PIXEL_MM) ** 2).sum())  # the sampled source's own variance (mm^2)
    brute = np.zeros_like(sharp)
    for k, wk in zip(ks, w):
        moved = base.at(isocenter_mm=(k * PIXEL_MM, 0.0, 0.0))
        brute += wk * np.roll(_profile(vol, moved), int(round(k * step)))
    z = base.source_to_isocenter_vertical_distance - offset_mm
    m = base.source_to_detector_distance / z  # the geometric magnification of the wire
    added = _variance_mm2(brute) - _variance_mm2(sharp)
    assert added == pytest.approx(spot_var * (m - 1) ** 2, rel=0.02)
    sigma_det = focal_spot_sigma_mm(FOCAL_SPOT_MM, z, base.source_to_detector_distance)
    assert sigma_det**2 == pytest.approx(spot_var * (m - 1) ** 2, rel=0.02)
    model = gaussian_blur(sharp[None, :], sigma_det / PIXEL_MM)[0]  # what the scene applies
    assert _variance_mm2(model) - _variance_mm2(sharp) == pytest.approx(added, rel=0.02)
    if offset_mm == 0.0:  # the figure: 0.6 mm spot, vessel at the isocenter -> ~0.55 mm FWHM
        assert sigma_det * FWHM_PER_SIGMA == pytest.approx(0.555, abs=0.005)


#: docs/physics.md §6: MTF50 of the CsI light spread alone (cycles/mm), fitted to the measured panel below.
DOCUMENTED_MTF50 = 1.46
#: Kuhls-Gilcrist, Bednarek & Rudin, Proc SPIE 7622, 76224W (2010): presampled MTF of a commercial indirect
#: CsI flat panel at 2.5 cycles/mm (0 deg), 0.086 +- 0.007; pixel pitch 0.194 mm (docs/physics.md §6).
MEASURED_MTF_2P5, MEASURED_MTF_2P5_SD, PANEL_PITCH_MM = 0.086, 0.007, 0.194


def _mtf(lsf: np.ndarray, pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in cycles/mm, |DFT| of the line spread function normalised to 1 at zero)."""
    mtf = np.abs(np.fft.rfft(lsf))
    return np.fft.rfftfreq(lsf.size, d=pixel_mm), mtf / mtf[0]


def test_detector_mtf50_from_the_line_spread_function():
    """MTF = |DFT(LSF)| of a blurred line at 0.025 mm pixels: 0.5 at the documented MTF50 within 5 %."""
    n = 2048
    line = np.zeros((1, n))
    line[0, n // 2] = 1.0
    lsf = gaussian_blur(line, detector_sigma_mm(CSI_MTF50_CYCLES_PER_MM) / PIXEL_MM)[0]
    f, mtf = _mtf(lsf, PIXEL_MM)
    i = int(np.argmax(mtf < 0.5))
    f50 = f[i - 1] + (0.5 - mtf[i - 1]) * (f[i] - f[i - 1]) / (mtf[i] - mtf[i - 1])
    assert f50 == pytest.approx(DOCUMENTED_MTF50, rel=0.05)


def test_presampled_mtf_matches_a_measured_csi_panel():
    """The light spread times the 0.194 mm pixel aperture (a 10-sample box at 0.0194 mm) gives the
    measured presampled MTF at 2.5 cycles/mm within the measurement's standard deviation."""
    fine_mm, n = PANEL_PITCH_MM / 10, 4000
    line = np.zeros((1, n))
    line[0, n // 2] = 1.0
    lsf = np.convolve(gaussian_blur(line, detector_sigma_mm(CSI_MTF50_CYCLES_PER_MM) / fine_mm)[0],
                      np.full(10, 0.1), mode="same")
    f, mtf = _mtf(lsf, fine_mm)
    assert np.interp(2.5, f, mtf) == pytest.approx(MEASURED_MTF_2P5, abs=MEASURED_MTF_2P5_SD)


def test_blur_keeps_mass_and_sparsity_and_checks_input():
    img = np.zeros((40, 50, 2))
    img[20, 25] = [1.0, 3.0]
    out = gaussian_blur(img, 0.4)
    np.testing.assert_allclose(out.sum(axis=(0, 1)), [1.0, 3.0], rtol=1e-12)
    r = support_radius_px(0.4)
    assert np.all(out >= 0) and np.count_nonzero(out[..., 0]) == (2 * r + 1) ** 2
    with pytest.raises(InputError, match="focal_spot_mm"):
        BlurSettings(focal_spot_mm=-1)
    with pytest.raises(InputError, match="mtf50"):
        BlurSettings(detector_mtf50_cycles_per_mm=0)
    with pytest.raises(InputError, match="between"):
        focal_spot_sigma_mm(0.6, 1500.0, 1020.0)


def test_scene_blur_is_on_by_default_and_in_the_target():
    """The default scene blurs: the target is the blurred contrast minus the blurred mask, equal to 0
    beyond the blur's reach of the iodine, wider and lower than the sharp target, with its sum kept."""
    ct = cylinder_ct()
    carm = small_carm(96, 0.5)
    assert make_scene(ct, y_tree(), blur=BlurSettings()).blur == BlurSettings()
    sharp = render_triplet(make_scene(ct, y_tree(), blur=SHARP), carm, np.random.default_rng(0))
    soft = render_triplet(make_scene(ct, y_tree(), blur=BlurSettings()), carm, np.random.default_rng(0))
    np.testing.assert_array_equal(soft["iodine_mg_per_cm2"], sharp["iodine_mg_per_cm2"])
    assert np.array_equal(soft["dsa_target"], soft["contrast"] - soft["mask"])
    assert soft["dsa_target"].max() < sharp["dsa_target"].max()
    assert np.count_nonzero(soft["dsa_target"]) > np.count_nonzero(sharp["dsa_target"])
    assert soft["dsa_target"].sum() == pytest.approx(sharp["dsa_target"].sum(), rel=0.02)  # spread, not lost
    from scipy.ndimage import binary_dilation

    reach = binary_dilation(sharp["vessel_mask"].astype(bool), iterations=12)
    assert np.all(soft["dsa_target"][~reach] == 0)
