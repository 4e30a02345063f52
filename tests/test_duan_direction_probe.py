"""experiments/duan/direction_probe.py measures what it says: its straight tube is a cylinder's chord profile
at the stated angle, its direction bins put a line at its angle to the image axes, its amplitude bins
put a pixel by the target's value, and its width bins by the width of the tube it belongs to."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def probe(experiment_script):
    return experiment_script("duan/direction_probe.py")


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0])
def test_tube_cross_section_is_a_cylinders_chord_profile(probe, angle):
    """Per unit length the profile a d sqrt(1 - (2u/d)^2) integrates to a d (pi d / 4) (half an ellipse of
    semi-axes d/2 and a d). The profile is sampled at pixel centres (the midpoint rule), whose error on the
    semicircle falls as d^-1.5: 1.3 % at 8 px, 0.17 % at 32 px."""
    width = 32.0
    img = probe.tube((256, 256), width, angle)
    a = probe.AMPLITUDE_PER_PX
    per_length = a * width * np.pi * width / 4
    if angle in (0.0, 90.0):  # exact along the rows (vertical) or the columns (horizontal)
        lines = img.sum(axis=1 if angle == 0.0 else 0)
        assert np.allclose(lines, lines[0])
        assert lines[0] == pytest.approx(per_length, rel=0.003)
    else:  # a row crosses the tilted tube over width / cos(angle): its sum is the cross-section / cos
        rows = img[64:192].sum(axis=1)
        assert rows.mean() == pytest.approx(per_length / np.cos(np.deg2rad(angle)), rel=0.003)
    assert img.max() == pytest.approx(a * width, rel=0.001)


def test_tube_runs_along_the_columns_at_zero_degrees_off_the_centre(probe):
    img = probe.tube((128, 128), 4.0, 0.0)
    cols = np.flatnonzero(img[0] > 0)
    assert np.mean(cols) == pytest.approx((128 - 1) / 2 + probe.OFFSET_PX, abs=0.5)
    assert np.all(img[:, cols].min(axis=0) > 0)  # the whole height


@pytest.mark.parametrize(("angle", "to_axes"), [(0.0, 0.0), (15.0, 15.0), (30.0, 30.0), (45.0, 45.0),
                                                (80.0, 10.0), (90.0, 0.0), (120.0, 30.0)])
def test_a_lines_angle_to_the_image_axes(probe, angle, to_axes):
    img = probe.tube((128, 128), 6.0, angle)
    measured, coherence = probe.angle_to_axes(img)
    core = img > 0.5 * img.max()
    assert np.median(measured[core]) == pytest.approx(to_axes, abs=1.0)
    assert np.median(coherence[core]) > 0.9  # a line


def test_recovery_by_direction_bins_each_line_by_its_angle(probe):
    """A vertical tube drawn at half its value and a 40-degree tube in full: the 0-10 degree bin recovers
    0.5, the 30-45 degree bin 1.0, and the bins between hold almost nothing (pixels where a tube meets the
    image border, whose window is reflected)."""
    vertical, oblique = probe.tube((128, 128), 6.0, 0.0), probe.tube((128, 128), 6.0, 40.0)
    targets = np.stack([vertical, oblique])
    recovery, share = probe.recovery_by_direction(np.stack([0.5 * vertical, oblique]), targets)
    assert recovery[0] == pytest.approx(0.5, abs=1e-3)
    assert recovery[-1] == pytest.approx(1.0, abs=1e-3)
    assert share[1] + share[2] < 0.03
    assert share[0] == pytest.approx(vertical.sum() / targets.sum(), abs=0.03)


def test_recovery_by_amplitude_bins_each_pixel_by_the_targets_value(probe):
    """Two flat discs of 0.3 and 3.0 -ln units, the network drawing the faint one in full and a fifth of the
    bright one: the 0.25-0.5 bin recovers 1.0, the bin above 2 recovers 0.2, the others are empty (NaN), and
    the shares are the discs' sums over the total."""
    yy, xx = np.mgrid[:64, :64]
    faint = 0.3 * ((yy - 20) ** 2 + (xx - 20) ** 2 < 64)
    bright = 3.0 * ((yy - 44) ** 2 + (xx - 44) ** 2 < 36)
    targets = (faint + bright)[None]
    recovery, share = probe.recovery_by_amplitude((faint + 0.2 * bright)[None], targets)
    assert [lo for lo, _ in probe.AMPLITUDE_BINS][1:] == [0.25, 0.5, 1.0, 2.0]
    assert recovery[1] == pytest.approx(1.0) and recovery[-1] == pytest.approx(0.2)
    assert np.isnan(recovery[[0, 2, 3]]).all()
    assert share[1] == pytest.approx(faint.sum() / targets.sum())
    assert share[-1] == pytest.approx(bright.sum() / targets.sum())


def test_recovery_by_width_bins_each_tube_by_its_width(probe):
    """Tubes of 6 and 20 pixels, the network drawing the narrow one in full and half of the wide one: the 4-8
    pixel bin recovers 1.0, the bin above 16 pixels 0.5, and the shares are the tubes' sums over the total."""
    narrow, wide = probe.tube((160, 160), 6.0, 30.0), probe.tube((160, 160), 20.0, 120.0)
    width = probe.vessel_width(narrow)
    assert np.median(width[narrow > probe.MIN_TARGET]) == pytest.approx(6.0, abs=1.0)
    targets = np.stack([narrow, wide])
    recovery, share = probe.recovery_by_width(np.stack([narrow, 0.5 * wide]), targets)
    assert recovery[1] == pytest.approx(1.0, abs=0.02) and recovery[-1] == pytest.approx(0.5, abs=0.02)
    assert share[1] == pytest.approx(narrow.sum() / targets.sum(), abs=0.03)
    assert share[-1] == pytest.approx(wide.sum() / targets.sum(), abs=0.03)


def test_medial_width_is_the_same_on_every_call(probe):
    """skimage breaks ties between equally thin axis candidates at random unless seeded (three crossing tubes give
    about a hundred such pixels): the widths, and every measurement on them, must not move between runs."""
    t = probe.tube((96, 96), 8.0, 30.0) + probe.tube((96, 96), 6.0, 0.0) + probe.tube((96, 96), 12.0, 75.0)
    (axis, width), (again, width_again) = probe.medial_width(t), probe.medial_width(t)
    assert axis.any() and np.array_equal(axis, again) and np.array_equal(width, width_again)
    assert np.array_equal(probe.vessel_width(t), probe.vessel_width(t))
