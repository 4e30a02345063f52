"""Projector accuracy against analytic phantoms and exact Beer-Lambert sums."""

from __future__ import annotations

import numpy as np
import pytest

from ddsa_sim import InputError
from ddsa_sim.geometry import CArm
from ddsa_sim.physics.attenuation import mass_attenuation
from ddsa_sim.physics.spectra import get_spectrum
from ddsa_sim.projector import Projector, ProjectorVolume

SPECTRUM = "90KV_AL40"


def _carm(alpha_deg=0.0, beta_deg=0.0, n=48, pixel=1.2):
    return CArm(alpha_deg=alpha_deg, beta_deg=beta_deg, sensor_height=n, sensor_width=n, pixel_mm=pixel)


def _distance_to_rays(carm, point):
    d = carm.ray_directions().reshape(-1, 3)
    s = carm.source_mm
    t = (np.asarray(point) - s) @ d.T
    closest = s + t[:, None] * d
    return np.linalg.norm(closest - point, axis=1), d


@pytest.mark.parametrize("step_mm", [0.5, None])
@pytest.mark.parametrize("alpha,beta", [(0, 0), (27, -13), (-38, 71)])
def test_sphere_chords(phantom_grid, alpha, beta, step_mm):
    """Trilinear marching reconstructs the continuous object: chords within 0.5% with samples at
    most 0.5 mm apart. The default, one sample per voxel plane of the dominant axis, spaces samples
    up to sqrt(3) voxels apart on oblique rays; its trapezoid error adds up to 0.15 % at the sphere's
    edge (0.37 % -> 0.52 % here), so it is held to 0.6 % (median 0.15 %)."""
    method = "trilinear"
    R, rho = 30.0, 1.7
    frac, affine = phantom_grid((72, 72, 72), 1.0, lambda x, y, z: x * x + y * y + z * z <= R * R)
    vol = ProjectorVolume.single_material("sphere", rho * frac, affine, "water")
    carm = _carm(alpha, beta)
    area = Projector([vol], SPECTRUM, method=method, step_mm=step_mm).march(carm, "sphere")[..., 0].ravel()
    dist, _ = _distance_to_rays(carm, np.zeros(3))
    chord_cm = 2 * np.sqrt(np.clip(R * R - dist**2, 0, None)) / 10
    sel = dist < 0.8 * R  # rays not grazing the edge
    assert sel.sum() > 300
    rel = np.abs(area[sel] - rho * chord_cm[sel]) / (rho * chord_cm[sel])
    assert rel.max() < (0.005 if step_mm else 0.006), rel.max()
    assert np.median(rel) < 0.0015
    assert np.all(area[dist > R + 2] == 0)


@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_cylinder_and_box_chords(phantom_grid, method):
    """Trilinear: within 0.5% of the continuous chords. Siddon integrates the piecewise-constant voxel
    model exactly, so it is held to the box, whose faces lie on voxel boundaries (exact for every ray)."""
    # cylinder of radius 25 mm along world z; box 50 x 40 x 30 mm; both at an oblique pose
    r = 25.0
    frac, affine = phantom_grid((64, 64, 64), 1.0, lambda x, y, z: (x * x + y * y <= r * r) & (np.abs(z) <= 30))
    carm = _carm(alpha_deg=0, beta_deg=0, n=40)  # AP: rays travel along world y, perpendicular to the axis
    area = Projector([ProjectorVolume.single_material("c", frac, affine, "water")], SPECTRUM,
                     method=method, step_mm=0.5).march(carm, "c")[..., 0].ravel()
    d = carm.ray_directions().reshape(-1, 3)
    s = carm.source_mm
    # exact chord of a ray through an infinite cylinder x^2 + y^2 <= r^2 (the z extent is not reached here)
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (s[0] * d[:, 0] + s[1] * d[:, 1])
    c = s[0] ** 2 + s[1] ** 2 - r * r
    disc = b * b - 4 * a * c
    chord = np.sqrt(np.clip(disc, 0, None)) / a
    t_mid = -b / (2 * a)
    z_mid = s[2] + t_mid * d[:, 2]
    sel = (disc > 0) & (chord > 0.6 * 2 * r) & (np.abs(z_mid) < 20)
    assert sel.sum() > 100
    if method == "trilinear":
        np.testing.assert_allclose(area[sel], chord[sel] / 10, rtol=0.005)

    half = np.array([25.0, 20.0, 15.0])
    fb, ab = phantom_grid((64, 64, 64), 1.0, ss=1, inside=lambda x, y, z: (np.abs(x) <= half[0]) & (np.abs(y) <= half[1])
                          & (np.abs(z) <= half[2]))
    carm = _carm(alpha_deg=20, beta_deg=10, n=40)
    area = Projector([ProjectorVolume.single_material("b", fb, ab, "water")], SPECTRUM,
                     method=method, step_mm=0.5).march(carm, "b")[..., 0].ravel()
    d = carm.ray_directions().reshape(-1, 3)
    s = carm.source_mm
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - s) / d, (half - s) / d
    tmin = np.minimum(t1, t2).max(axis=1)
    tmax = np.maximum(t1, t2).min(axis=1)
    chord = np.clip(tmax - tmin, 0, None)
    # not grazing: the entry and exit points are at least 2 mm from every edge of the box
    inner = np.all(np.abs(s + tmin[:, None] * d) < half + 1e-6, axis=1)
    near_edge = np.zeros(len(d), bool)
    for t in (tmin, tmax):
        p = np.abs(s + t[:, None] * d)
        n_close = (np.abs(p - half) < 2.0).sum(axis=1)
        near_edge |= n_close >= 2
    sel = (chord > 20) & inner & ~near_edge
    assert sel.sum() > 100
    if method == "siddon":
        np.testing.assert_allclose(area, chord / 10, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(area[sel], chord[sel] / 10, rtol=0.005)


def _slab(thickness_mm, rho, material, n=8):
    """A laterally infinite (wider than the field) slab perpendicular to the AP rays."""
    ny = max(2, int(round(thickness_mm)))
    dens = np.full((n, ny, n), rho, np.float32)
    affine = np.diag([40.0, thickness_mm / ny, 40.0, 1.0])
    affine[:3, 3] = [-40.0 * (n - 1) / 2, -thickness_mm / 2 + thickness_mm / ny / 2, -40.0 * (n - 1) / 2]
    return ProjectorVolume.single_material(material, dens, affine, material)


def _beer_lambert(spectrum, terms, mode="energy"):
    """Plain loop over energy bins: sum_b w_b exp(-sum_m mu_m(E_b) A_m) / sum_b w_b."""
    num = den = 0.0
    for e, p in zip(spectrum.energies_kev, spectrum.fluence):
        w = p * (e if mode == "energy" else 1.0)
        mu_a = sum(float(mass_attenuation(m, [e])[0]) * a for m, a in terms)
        num += w * np.exp(-mu_a)
        den += w
    return num / den


@pytest.mark.parametrize("mode", ["energy", "photon"])
def test_polychromatic_water_slab(mode):
    spectrum = get_spectrum(SPECTRUM)
    slab = _slab(200.0, 1.0, "water")
    carm = _carm(n=8, pixel=2.0)
    res = Projector([slab], spectrum, mode=mode).render(carm)
    dirs = carm.ray_directions().reshape(-1, 3)
    path_cm = 200.0 / np.abs(dirs[:, 1]) / 10  # slab of 200 mm along world y (AP)
    expected = np.array([_beer_lambert(spectrum, [("water", 1.0 * L)], mode) for L in path_cm[:4]])
    np.testing.assert_allclose(res.intensity["image"].ravel()[:4], expected, rtol=1e-3)
    np.testing.assert_allclose(res.neglog["image"].ravel()[:4], -np.log(expected), rtol=1e-3)


def test_iodine_beer_lambert_and_two_volumes_are_additive(phantom_grid):
    spectrum = get_spectrum(SPECTRUM)
    box_frac, box_aff = phantom_grid((40, 40, 40), 2.0, lambda x, y, z: (np.abs(x) < 35) & (np.abs(y) < 35)
                                     & (np.abs(z) < 35), ss=1)
    water = ProjectorVolume.single_material("water", box_frac, box_aff, "water")
    R = 6.0
    sph, sph_aff = phantom_grid((64, 64, 64), 0.25, lambda x, y, z: x * x + y * y + z * z <= R * R)
    c_mg_per_ml = 20.0
    iodine = ProjectorVolume.single_material("iodine", sph * c_mg_per_ml / 1000, sph_aff, "iodine")
    carm = _carm(alpha_deg=15, beta_deg=5, n=64, pixel=0.5)
    proj = Projector([water, iodine], spectrum, step_mm=0.125)
    res = proj.render(carm, {"mask": ["water"], "contrast": ["water", "iodine"]})
    w_mask = res.area_density_g_per_cm2["mask"]["water"]
    w_con = res.area_density_g_per_cm2["contrast"]["water"]
    i_con = res.area_density_g_per_cm2["contrast"]["iodine"]
    # the water is unchanged everywhere, inside the sphere's bounding box too (no DeepDRR-style override)
    np.testing.assert_array_equal(w_mask, w_con)
    assert np.all(res.area_density_g_per_cm2["mask"]["iodine"] == 0)
    # known iodine area density: chord x concentration
    dist, _ = _distance_to_rays(carm, np.zeros(3))
    chord_cm = 2 * np.sqrt(np.clip(R * R - dist**2, 0, None)) / 10
    sel = dist < 0.7 * R
    np.testing.assert_allclose(i_con.ravel()[sel], chord_cm[sel] * c_mg_per_ml / 1000, rtol=0.01)
    # both images match the Beer-Lambert loop with the projector's own area densities
    for k in np.flatnonzero(sel)[:3]:
        terms = [("water", float(w_con.ravel()[k])), ("iodine", float(i_con.ravel()[k]))]
        assert res.intensity["contrast"].ravel()[k] == pytest.approx(_beer_lambert(spectrum, terms), rel=1e-4)
    # outside the sphere's shadow the two images are identical
    outside = dist > R + 1
    np.testing.assert_array_equal(res.neglog["mask"].ravel()[outside], res.neglog["contrast"].ravel()[outside])
    # the single-volume image equals the mask image
    only = Projector([water], spectrum, step_mm=0.125).render(carm)
    np.testing.assert_array_equal(only.neglog["image"], res.neglog["mask"])


def test_displacement_is_linear(phantom_grid):
    frac, aff = phantom_grid((20, 20, 20), 1.0, lambda x, y, z: x * x + y * y + z * z <= 64, ss=2)
    blood = ProjectorVolume.single_material("blood", frac * 1.06, aff, "blood")
    iod = ProjectorVolume.single_material("iod", frac * 0.01, aff, "iodine", displaces={"blood": 2.0})
    proj = Projector([blood, iod])
    carm = _carm(n=16, pixel=1.0)
    res = proj.render(carm, {"c": ["blood", "iod"]}).area_density_g_per_cm2["c"]
    a_b = proj.march(carm, "blood")[..., proj.materials.index("blood")]
    a_i = proj.march(carm, "iod")[..., proj.materials.index("iodine")]
    np.testing.assert_allclose(res["blood"], np.maximum(a_b - 2.0 * a_i, 0), rtol=1e-6, atol=1e-9)


def test_thread_count_does_not_change_results(phantom_grid):
    frac, aff = phantom_grid((32, 32, 32), 1.5, lambda x, y, z: (x + 3) ** 2 + y * y + (z - 2) ** 2 <= 300, ss=2)
    vol = ProjectorVolume.single_material("v", frac, aff, "water")
    labels = (np.indices(frac.shape).sum(axis=0) % 3).astype(np.uint8)  # labels change at every voxel
    mixed = ProjectorVolume("m", frac, labels, ("water", "bone", "blood"), aff)
    carm = _carm(alpha_deg=33, beta_deg=-21, n=128)  # more pixels than one spectrum block: threads split them
    for method in ("siddon", "trilinear"):
        one = Projector([vol, mixed], method=method, threads=1).render(carm, {"v": ["v"], "m": ["m"]})
        two = Projector([vol, mixed], method=method, threads=2).render(carm, {"v": ["v"], "m": ["m"]})
        for image in ("v", "m"):
            np.testing.assert_array_equal(one.intensity[image], two.intensity[image])
            for material in ("water", "bone", "blood"):
                np.testing.assert_array_equal(one.area_density_g_per_cm2[image][material],
                                              two.area_density_g_per_cm2[image][material])


@pytest.mark.parametrize("method,backend", [("siddon", "numba"), ("trilinear", "numba"), ("trilinear", "torch")])
def test_rays_end_on_the_detector(method, backend):
    """A water slab across the detector plane (AP view: source at y = +530, detector at y = -490 mm) attenuates
    only between its near face and the detector: the chord 120 mm / cos(ray angle), not the slab's 230 mm."""
    if backend == "torch":
        pytest.importorskip("torch")
    carm = _carm()
    affine = np.diag([4.0, 2.0, 4.0, 1.0])
    affine[:3, 3] = [-198.0, -599.0, -198.0]  # y faces at -600 and -370 mm, x and z faces at +-200 mm
    slab = ProjectorVolume.single_material("slab", np.ones((100, 115, 100), np.float32), affine, "water")
    proj = Projector([slab], method=method, backend=backend, step_mm=0.5 if method == "trilinear" else None)
    area = proj.render(carm).area_density_g_per_cm2["image"]["water"]
    dirs = carm.ray_directions()
    assert np.allclose(carm.source_mm, [0.0, 530.0, 0.0]) and np.allclose(carm.detector_center_mm, [0.0, -490.0, 0.0])
    expected = 1.0 * 120.0 / np.abs(dirs[..., 1]) / 10.0  # g/cm^2
    np.testing.assert_allclose(area, expected, rtol=1e-5)


def test_out_of_view_and_bad_volumes():
    dens = np.ones((4, 4, 4), np.float32)
    far = np.eye(4)
    far[:3, 3] = [5000.0, 0, 0]
    proj = Projector([ProjectorVolume.single_material("v", dens, far, "water")])
    with pytest.raises(InputError, match="outside the field of view"):
        proj.render(_carm())
    # one volume in view is enough, whichever comes first (the check had read the first alone)
    near = np.eye(4)
    near[:3, 3] = -1.5
    two = Projector([ProjectorVolume.single_material("far", dens, far, "water"),
                     ProjectorVolume.single_material("near", dens, near, "water")])
    assert two.render(_carm()).neglog["image"].max() > 0
    both_far = Projector([ProjectorVolume.single_material("far", dens, far, "water"),
                          ProjectorVolume.single_material("far2", dens, far, "water")])
    with pytest.raises(InputError, match="volume 'far' is entirely outside the field of view"):
        both_far.render(_carm())
    with pytest.raises(InputError, match="NaN"):
        ProjectorVolume.single_material("v", np.full((2, 2, 2), np.nan), np.eye(4), "water")
    with pytest.raises(InputError, match="unique"):
        v = ProjectorVolume.single_material("v", dens, np.eye(4), "water")
        Projector([v, v])
    with pytest.raises(InputError, match="projector: no volumes"):  # was: "materials is empty"
        Projector([])


@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_empty_space_skipping_and_ray_order_are_exact(method):
    """Brick skipping, rays marched in any order, equals the plain march on a sparse volume
    (vessel-like blobs); for trilinear the bricks' one-voxel margin keeps every non-zero sample."""
    from ddsa_sim.projector.kernels_cpu import brick_occupancy, siddon_area_density, trilinear_area_density

    def march(dens_bits, vfw, src, dirs, order, out, bricks, shift):
        ends = np.full(len(dirs), 1e30)  # no detector in the way
        if method == "siddon":
            siddon_area_density(dens_bits, 0, lut, vfw, src, dirs, ends, order, out, bricks, shift)
        else:
            trilinear_area_density(dens_bits, 0, lut, vfw, src, dirs, ends, order, 0.0, out, bricks, shift)

    rng = np.random.default_rng(7)
    dens = np.zeros((70, 45, 90), np.float32)
    for _ in range(12):
        c = rng.integers(0, dens.shape, 3)
        sl = tuple(slice(max(0, a - 3), a + 3) for a in c)
        dens[sl] = rng.uniform(0.5, 2.0)
    affine = np.diag([0.5, 0.7, 0.4, 1.0])
    affine[:3, 3] = -np.array(dens.shape) * np.diag(affine)[:3] / 2
    bricks, shift = brick_occupancy(dens)
    assert shift == 3 and 0 < bricks.mean() < 0.5
    bits = dens.view(np.uint32)
    lut = np.zeros(1, np.int64)
    for alpha, beta in [(0, 0), (33, -17), (-40, 95)]:
        carm = _carm(alpha, beta, n=40, pixel=1.0)
        dirs = carm.ray_directions().reshape(-1, 3)
        vfw = np.linalg.inv(affine)[:3]
        plain = np.zeros((len(dirs), 1))
        fast = np.zeros((len(dirs), 1))
        rows = np.arange(len(dirs))
        march(bits, vfw, carm.source_mm, dirs, rows, plain, np.ones((1, 1, 1), np.uint8), 0)
        march(bits, vfw, carm.source_mm, dirs, rng.permutation(rows), fast, bricks, shift)
        assert plain.max() > 0
        np.testing.assert_allclose(fast, plain, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("shape,brick_shift", [((70, 45, 90), 3), ((17, 9, 33), 2), ((1, 8, 16), 3)])
def test_brick_occupancy_is_the_dilated_mask_per_brick(shape, brick_shift):
    """Each brick is occupied exactly when the 3x3x3 dilation of the non-zero voxels (scipy) meets it."""
    from scipy import ndimage

    from ddsa_sim.projector.kernels_cpu import brick_occupancy

    rng = np.random.default_rng(11)
    dens = np.where(rng.random(shape) < 2e-3, rng.uniform(0.1, 2.0, shape), 0.0).astype(np.float32)
    dens[-1, -1, -1] = 1.0  # a voxel in the last, partial brick
    b = 1 << brick_shift
    grown = ndimage.binary_dilation(dens != 0, structure=np.ones((3, 3, 3), bool))
    nb = -(-np.array(shape) // b)
    padded = np.zeros(tuple(nb * b), bool)
    padded[:shape[0], :shape[1], :shape[2]] = grown
    expected = padded.reshape(nb[0], b, nb[1], b, nb[2], b).any(axis=(1, 3, 5))
    bricks, shift = brick_occupancy(dens, brick_shift, max_fraction=1.0)
    assert shift == brick_shift and bricks.dtype == np.uint8 and bricks.flags.c_contiguous
    np.testing.assert_array_equal(bricks.astype(bool), expected)
    assert brick_occupancy(np.ones(shape, np.float32), brick_shift)[1] == 0  # dense: skipping off


def test_volume_layout_longest_axes_innermost_labels_in_the_low_bits():
    """A Fortran-ordered CT-like volume: axes reordered (numpy transpose), labels packed, world unchanged."""
    rng = np.random.default_rng(5)
    dens = np.asfortranarray(rng.uniform(0.0, 2.0, (50, 60, 7)).astype(np.float32))
    labels = np.asfortranarray(rng.integers(0, 3, dens.shape).astype(np.uint8))
    affine = np.array([[0.0, 0.8, 0.0, -20.0], [0.9, 0.0, 0.0, 5.0], [0.0, 0.0, 2.5, 30.0], [0, 0, 0, 1]])
    v = ProjectorVolume("ct", dens, labels, ("air", "soft tissue", "bone"), affine)
    assert v.shape == (7, 50, 60) and v.density_g_per_cc.flags.c_contiguous and v.labels.flags.c_contiguous
    assert v.label_mask == 3
    np.testing.assert_array_equal(v.labels, labels.transpose(2, 0, 1))
    bits = v.density_bits
    np.testing.assert_array_equal(bits & 3, labels.transpose(2, 0, 1))
    np.testing.assert_array_equal(bits & ~np.uint32(3), dens.transpose(2, 0, 1).view(np.uint32) & ~np.uint32(3))
    ijk = np.array([[3, 41, 5, 1.0], [0, 0, 0, 1.0], [49, 59, 6, 1.0]])  # old (i, j, k) -> new (k, i, j)
    np.testing.assert_allclose(ijk[:, [2, 0, 1, 3]] @ v.world_from_voxel.T, ijk @ affine.T, atol=1e-12)
    single = ProjectorVolume.single_material("w", dens[:, :, :5], affine, "water")  # nothing packed
    np.testing.assert_array_equal(single.density_g_per_cc, dens[:, :, :5].transpose(2, 0, 1))


def test_cache_friendly_order_steps_along_the_innermost_axis():
    """Consecutive rays of the order step along the detector axis that moves along the volume's
    innermost voxel axis; the order is always a permutation of all rays."""
    from ddsa_sim.projector.kernels_cpu import cache_friendly_order

    carm = _carm(0, 0, n=6, pixel=1.0)
    dirs = carm.ray_directions()
    for innermost in range(3):
        perm = [a for a in range(3) if a != innermost] + [innermost]
        vfw = np.eye(4)[perm][:3]  # voxel axis 2 = world axis `innermost`
        order = cache_friendly_order(dirs, vfw)
        assert sorted(order) == list(range(36))
        step = dirs.reshape(-1, 3)[order[1]] - dirs.reshape(-1, 3)[order[0]]
        across = np.abs(step) > 0.1 * np.abs(step).max()
        if np.abs(carm.principal_ray[innermost]) < 0.5:  # the innermost axis lies in the detector plane
            assert across[innermost], (innermost, step)


def test_unknown_volume_in_images_is_a_clear_error():
    v = ProjectorVolume.single_material("v", np.ones((4, 4, 4), np.float32), np.eye(4), "water")
    with pytest.raises(InputError, match="unknown volume 'vessels'"):
        Projector([v]).render(_carm(n=4), {"contrast": ["v", "vessels"]})


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_wait_passively_unless_the_user_says_otherwise(preset, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = "import os, ddsa_sim.projector; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
