"""The CT's heart beating with the coronary tree (docs/dsa.md §4.1, ddsa_sim/scene/beating_heart.py):
tissue under every node moves with it, nothing moves far from the heart, no folding, phase 0 is the scan."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import cylinder_ct, make_scene, small_carm

from ddsa_sim.projector import ProjectorVolume
from ddsa_sim.scene import render_frames
from ddsa_sim.scene.beating_heart import (
    CARDIAC_FALLOFF_MM,
    HEART_MARGIN_MM,
    beating_ct,
    heart_field,
)
from ddsa_sim.scene.cardiorespiratory import HEART_LONG_AXIS_LPS, HeartFrame, cardiac_displacement_mm
from ddsa_sim.scene.motion import MotionParams
from ddsa_sim.volumes import from_array

E = HEART_LONG_AXIS_LPS
APEX = 45.0 * E
L_MM, R_MM = 90.0, 40.0
FRAME = HeartFrame(APEX - 0.5 * L_MM * E, APEX, E, L_MM, R_MM)
SPACING = 2.0
N = 110  # a 220 mm cube of 2 mm voxels centred at 0
AFFINE = np.diag([SPACING, SPACING, SPACING, 1.0])
AFFINE[:3, 3] = -(N - 1) / 2 * SPACING


def _apex_coordinates(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance from the apex towards the base, distance from the long axis) of world points (mm)."""
    rel = points - APEX
    s = -(rel @ E)
    return s, np.linalg.norm(rel + s[..., None] * E, axis=-1)


def _coronary_nodes() -> np.ndarray:
    """Nodes on the ventricles' epicardium: the paraboloid ``r = R sqrt(s / L)`` from apex to base."""
    s = np.linspace(4.0, L_MM, 12)
    phi = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    u = np.cross(E, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    v = np.cross(E, u)
    ss, pp = np.meshgrid(s, phi, indexing="ij")
    r = R_MM * np.sqrt(ss / L_MM)
    pts = APEX - ss[..., None] * E + r[..., None] * (np.cos(pp)[..., None] * u + np.sin(pp)[..., None] * v)
    return pts.reshape(-1, 3)


def _world() -> np.ndarray:
    return np.indices((N, N, N)).transpose(1, 2, 3, 0) * SPACING + AFFINE[:3, 3]


def _heart_label(world: np.ndarray) -> np.ndarray:
    """The labelled heart: the ventricles (the paraboloid) and the atria (a 35 mm ball beyond the base)."""
    s, r = _apex_coordinates(world)
    ventricles = (s >= 0) & (s <= L_MM) & (r <= R_MM * np.sqrt(np.clip(s, 0, None) / L_MM))
    atria = np.linalg.norm(world - (APEX - (L_MM + 15.0) * E), axis=-1) <= 35.0
    return ventricles | atria


@pytest.fixture(scope="module")
def field():
    return heart_field(FRAME, _coronary_nodes(), 12.0, 5.0, _heart_label(_world()), AFFINE)


def test_tissue_under_every_coronary_node_moves_with_it(field):
    nodes = _coronary_nodes()
    for f in (0.3, 1.0):  # the field at the nodes is the tree's own map
        assert np.allclose(field.displacement_mm(nodes, f), cardiac_displacement_mm(nodes, FRAME, f, 12.0, 5.0),
                           atol=1e-9)
    # beads of tissue just beneath nodes along the tree (base to apex; 8 mm towards the axis) land where
    # the tree's map puts them, after resampling
    nodes = nodes[[10 * 10 + 0, 7 * 10 + 3, 4 * 10 + 6, 1 * 10 + 8]]
    s, r = _apex_coordinates(nodes)
    axis_points = APEX - s[:, None] * E
    picks = nodes - 8.0 * (nodes - axis_points) / r[:, None]
    world = _world()
    dens = np.zeros((N, N, N), np.float32)
    for p in picks:  # Gaussian beads (sigma 3 mm): smooth enough for 2 mm voxels to carry their centroid
        dens += np.exp(-((world - p) ** 2).sum(axis=-1) / (2 * 3.0**2)).astype(np.float32)
    ct = ProjectorVolume("ct", dens, np.ones(dens.shape, np.uint8), ("air", "soft tissue"), AFFINE)
    moved = beating_ct(ct, field, 1.0)
    expected = cardiac_displacement_mm(picks, FRAME, 1.0, 12.0, 5.0)
    assert np.linalg.norm(expected, axis=1).min() > 1.5  # every bead visibly moves (least near the apex)

    def centroid(d: np.ndarray, p: np.ndarray) -> np.ndarray:
        near = np.linalg.norm(world - p, axis=-1) < 15.0
        w = np.where(near, d, 0.0).astype(np.float64)
        return (world * w[..., None]).sum(axis=(0, 1, 2)) / w.sum()

    for p, d in zip(picks, expected):
        assert np.allclose(centroid(moved.density_g_per_cc, p + d) - centroid(dens, p), d, atol=0.05)


def test_no_motion_far_from_the_heart_and_the_documented_fall_off(field):
    label = _heart_label(_world())
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(~label, sampling=SPACING)
    world = _world()
    far = dist > HEART_MARGIN_MM + CARDIAC_FALLOFF_MM + 2 * SPACING
    d = field.displacement_mm(world[far], 1.0)
    assert np.all(d == 0.0)
    # outward from the ventricles' lateral wall (mid-height): full motion within the margin, half at
    # margin + 15 mm (the smoothstep's midpoint), none beyond margin + 30 mm
    s0 = 0.5 * L_MM
    u = np.cross(E, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    wall = APEX - s0 * E + R_MM * np.sqrt(s0 / L_MM) * u
    out = np.array([0.0, HEART_MARGIN_MM, HEART_MARGIN_MM + 0.5 * CARDIAC_FALLOFF_MM,
                    HEART_MARGIN_MM + CARDIAC_FALLOFF_MM + 1.0])
    pts = wall + out[:, None] * u
    ratio = (np.linalg.norm(field.displacement_mm(pts, 1.0), axis=1)
             / np.linalg.norm(cardiac_displacement_mm(pts, FRAME, 1.0, 12.0, 5.0), axis=1))
    assert np.allclose(ratio, [1.0, 1.0, 0.5, 0.0], atol=0.08)  # the 2 mm grid of the distance
    # the resampled CT keeps every voxel that does not move bit for bit
    hu = np.where(label, 40.0, -800.0).astype(np.float32)
    ct = ProjectorVolume.from_ct(from_array(hu, AFFINE, "chest"), name="ct")
    moved = beating_ct(ct, field, 1.0)
    assert np.array_equal(moved.density_g_per_cc[far], ct.density_g_per_cc[far])
    assert beating_ct(ct, field, 0.0) is ct  # phase 0 (contraction 0): the scan itself


@pytest.mark.parametrize("amplitudes", [(12.0, 1.0), (15.0, 1.5), (15.0, 6.0)])  # default, export max, 4x radial
def test_no_folding(amplitudes):
    f = heart_field(FRAME, _coronary_nodes(), *amplitudes, _heart_label(_world()), AFFINE)
    grid = np.indices(f.weight.shape).transpose(1, 2, 3, 0) * f.spacing_mm + f.origin_mm
    d = f.displacement_mm(grid.reshape(-1, 3), 1.0).reshape(grid.shape)
    jac = np.stack([np.stack(np.gradient(d[..., i], f.spacing_mm), axis=-1) for i in range(3)], axis=-2)
    det = np.linalg.det(jac + np.eye(3))
    assert det.min() > 0.2, det.min()  # the map keeps its orientation everywhere


def test_heart_volume_change_from_the_field_and_from_the_resampled_ct(field):
    """Two independent measures of the heart's end-systolic volume agree: the Jacobian of the forward
    field over the label, and the voxels of the resampled (backward-mapped) label; the ventricles lose
    exactly the tree's affine volume fraction (1 - s_L)(1 - s_R)^2."""
    world = _world()
    label = _heart_label(world)
    d = field.displacement_mm(world.reshape(-1, 3), 1.0).reshape(world.shape)
    jac = np.stack([np.stack(np.gradient(d[..., i], SPACING), axis=-1) for i in range(3)], axis=-2)
    det = np.linalg.det(jac + np.eye(3))
    s, r = _apex_coordinates(world)
    inner = label & (s > 10.0) & (s < L_MM - 10.0) & (r < 0.8 * R_MM * np.sqrt(np.clip(s, 0, None) / L_MM))
    affine_fraction = (1 - 12.0 / L_MM) * (1 - 5.0 / R_MM) ** 2
    assert det[inner].mean() == pytest.approx(affine_fraction, rel=1e-6)
    ct = ProjectorVolume("ct", label.astype(np.float32), label.astype(np.uint8), ("air", "soft tissue"), AFFINE)
    resampled = beating_ct(ct, field, 1.0).labels.sum()
    assert resampled / label.sum() == pytest.approx(det[label].mean(), rel=0.01)
    change = 1 - det[label].mean()
    ventricles = label & (s <= L_MM)
    atria_gain = (det[label & (s > L_MM)] - 1).sum() / label.sum()
    assert 0 < atria_gain < change < 1 - affine_fraction  # the atria fill while the ventricles empty
    assert 1 - det[ventricles].mean() == pytest.approx(1 - affine_fraction, abs=0.03)


def _heart_scene(motion: MotionParams):
    """A water cylinder with lungs (-800 HU) around a heart (40 HU ball, labelled) holding the tree."""
    ct = cylinder_ct(n=48, spacing_mm=5.0, bone_rods=False)
    world = np.indices(ct.data.shape).transpose(1, 2, 3, 0) @ ct.affine[:3, :3].T + ct.affine[:3, 3]
    r = np.linalg.norm(world, axis=-1)
    hu = np.where(r < 80.0, -800.0, ct.data)
    heart = r < 35.0
    hu = np.where(heart, 40.0, hu).astype(np.float32)
    return make_scene(from_array(hu, ct.affine, "chest"), heart=heart, motion=motion)


def test_reference_phase_is_the_scan_and_other_phases_misregister_the_heart():
    carm = small_carm(size=64, pixel_mm=2.0)
    still = render_frames(_heart_scene(MotionParams("none")), carm, np.random.default_rng(5), times_s=[0.1, 0.3])
    frames = render_frames(_heart_scene(MotionParams("cardiac")), carm, np.random.default_rng(5), times_s=[0.1, 0.3])
    # seed 5: the mask and the first frame in diastasis (contraction 0), the second at 0.42
    assert [m["contraction"] for m in frames.motion][0] == 0.0 and frames.motion[1]["contraction"] > 0.3
    assert np.array_equal(frames.mask, still.mask)
    no_iodine = frames.iodine_mg_per_cm2 == 0
    assert np.array_equal(frames.conventional_dsa[0][no_iodine[0]], frames.dsa_target[0][no_iodine[0]])
    assert np.all(frames.dsa_target[no_iodine] == 0)  # targets stay clean
    artefact = np.abs(frames.conventional_dsa[1] - frames.dsa_target[1])[no_iodine[1]]
    assert artefact.max() > 0.05  # the heart's border misregisters


def test_a_heart_mask_off_the_ct_grid_is_refused():
    from ddsa_sim import InputError

    with pytest.raises(InputError, match="heart mask has shape"):
        make_scene(heart=np.zeros((3, 3, 3), bool))
