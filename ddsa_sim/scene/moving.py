"""Where each volume of a scene is in a frame under cardiac or respiratory motion.

:func:`ddsa_sim.scene.render.render_frames` asks, per contrast frame, for the physiological state at
the frame's time (:func:`physiological_state`), the world maps of the vessel volumes
(:func:`vessel_motion`), the moved catheter (:func:`catheter_motion`) and the area densities of what
moved (:func:`march_moving_vessels`, :func:`march_wall`, :func:`march_moving_ct`). The motion
models themselves are in :mod:`ddsa_sim.scene.cardiorespiratory` and, for the CT's heart,
:mod:`ddsa_sim.scene.beating_heart`; docs/dsa.md section 4.1.
"""

from __future__ import annotations

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.projector import Projector, ProjectorVolume
from ddsa_sim.scene.beating_heart import HeartField, beating_ct, heart_field
from ddsa_sim.scene.cardiorespiratory import (
    HeartFrame,
    cardiac_contraction,
    cardiac_phase,
    cardiac_transform,
    diaphragm_level_mm,
    diaphragm_offset_mm,
    heart_frame,
    respiratory_ct,
    respiratory_displacement_mm,
)
from ddsa_sim.scene.catheter import LUMEN_NAME, WALL_NAME, Catheter, tip_weights
from ddsa_sim.scene.motion import CARDIAC_KINDS, RESPIRATORY_KINDS
from ddsa_sim.scene.scene import Scene
from ddsa_sim.scene.vessels import TreeVessels, iodine_volume
from vessel_models.voxelize import voxelize_tree

__all__ = ["catheter_motion", "ct_at", "ct_displacement_mm", "heart_motion", "is_physiological", "march_moving_ct",
           "march_moving_vessels", "march_wall", "physiological_state", "vessel_motion"]


def is_physiological(scene: Scene) -> bool:
    return scene.motion.kind in (*CARDIAC_KINDS, *RESPIRATORY_KINDS)


def _dome_z_mm(scene: Scene) -> float:
    """The diaphragm dome's world z: the motion's own, else found in the CT once per scene."""
    if scene.motion.diaphragm_z_mm is not None:
        return float(scene.motion.diaphragm_z_mm)
    if "dome_z_mm" not in scene._motion_cache:
        scene._motion_cache["dome_z_mm"] = diaphragm_level_mm(scene.ct)
    z = scene._motion_cache["dome_z_mm"]
    if z is None:
        raise InputError(f"motion {scene.motion.kind}: found no lung in CT '{scene.ct.name}' to place the "
                         "diaphragm; give diaphragm_z_mm, its dome's world z in mm (export config: "
                         "effects.diaphragm_z_mm; ddsa-sim dsa: --diaphragm-z-mm)")
    return z


def _heart(scene: Scene, name: str) -> HeartFrame:
    key = ("heart", name)
    if key not in scene._motion_cache:
        scene._motion_cache[key] = heart_frame(scene.projector.volumes[name])
    return scene._motion_cache[key]


def heart_motion(scene: Scene) -> HeartField:
    """The CT's cardiac motion (:func:`~ddsa_sim.scene.beating_heart.heart_field`), once per scene: the
    heart beats with the first vessel source (the tree a coronary injection fills), in the region of
    the scene's labelled heart (``scene.heart``) and that tree's convex hull."""
    if "heart_field" not in scene._motion_cache:
        name, m = scene.vessel_names[0], scene.motion
        vol = scene.projector.volumes[name]
        src = scene.vessels[0]
        if isinstance(src, TreeVessels):
            lumen = src.tree.positions_mm
        else:
            idx = np.argwhere(vol.density_g_per_cc > 0)
            idx = idx[:: max(1, len(idx) // 200_000)]  # the hull of an even subset
            lumen = idx @ vol.world_from_voxel[:3, :3].T + vol.world_from_voxel[:3, 3]
        scene._motion_cache["heart_field"] = heart_field(_heart(scene, name), lumen, m.cardiac_longitudinal_mm,
                                                         m.cardiac_radial_mm, scene.heart, scene.ct.affine)
    return scene._motion_cache["heart_field"]


def physiological_state(scene: Scene, clock: dict[str, float], t_s: float | None) -> dict[str, float]:
    """Cardiac phase, contraction and diaphragm offset (mm) at bolus time ``t_s`` (None: the clock's
    time of a fully filled frame)."""
    m = scene.motion
    t = clock["full_fill_time_s"] if t_s is None else float(t_s)
    phase = float(cardiac_phase(clock["cardiac_start_s"] + t, m.heart_rate_bpm))
    return {"time_s": t, "cardiac_phase": phase,
            "contraction": float(cardiac_contraction(phase)) if m.kind in CARDIAC_KINDS else 0.0,
            "diaphragm_offset_mm": float(diaphragm_offset_mm(clock["breathing_start_s"] + t, m.breathing_period_s,
                                                              m.diaphragm_amplitude_mm))
            if m.kind in RESPIRATORY_KINDS else 0.0}


def vessel_motion(scene: Scene, state: dict[str, float], mask_state: dict[str, float]) -> dict[str, np.ndarray]:
    """World -> world map (4x4) of every contrast-frame volume in a frame of ``state``: for a vessel
    source the cardiac transform of its heart frame, then the respiratory displacement at its
    centroid relative to the mask's; a catheter's lumen: identity (it moves by :func:`catheter_motion`)."""
    m = scene.motion
    out = {name: np.eye(4) for name in scene.vessel_names}
    for name in scene.vessel_names[:len(scene.vessels)]:
        heart = _heart(scene, name)
        t = cardiac_transform(heart, state["contraction"], m.cardiac_longitudinal_mm, m.cardiac_radial_mm)
        if m.kind in RESPIRATORY_KINDS:
            t[:3, 3] += respiratory_displacement_mm(heart.centroid_mm, state["diaphragm_offset_mm"]
                                                    - mask_state["diaphragm_offset_mm"], _dome_z_mm(scene))[0]
        out[name] = t
    return out


def catheter_motion(scene: Scene, state: dict[str, float], mask_state: dict[str, float],
                    moves: dict[str, np.ndarray]) -> Catheter | None:
    """The scene's catheter in a frame of ``state`` (None without one; itself when it does not move).

    Each centreline point ``x`` at arc length ``u`` from the tip moves by
    ``b(u) d_tree + (1 - b(u)) d_ct(x)``: ``d_tree`` the displacement of the tip by the map of the
    tree it injects (``moves`` of the first vessel source, :func:`vessel_motion`: cardiac transform
    and the tree's respiratory shift), ``d_ct`` the CT's displacement at ``x`` (:func:`ct_displacement_mm`:
    the beating heart, then the breathing relative to the mask's), ``b`` :func:`tip_weights`.
    """
    cath = scene.catheter
    if cath is None:
        return None
    c = cath.centerline_mm
    t = moves[scene.vessel_names[0]]
    d_tree = c[-1] @ t[:3, :3].T + t[:3, 3] - c[-1]
    b = tip_weights(c)[:, None]
    return cath.moved(b * d_tree + (1.0 - b) * ct_displacement_mm(scene, c, state, mask_state))


def ct_displacement_mm(scene: Scene, points_mm: np.ndarray, state: dict[str, float],
                       mask_state: dict[str, float]) -> np.ndarray:
    """Where the CT's tissue at world points (as scanned) is in a frame of ``state`` (mm, (N, 3)): moved by
    the beating heart at the frame's contraction, then by the breathing between the mask's time and the frame's."""
    p = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
    moved = p.copy()
    if scene.motion.kind in CARDIAC_KINDS and state["contraction"] != 0:
        moved += heart_motion(scene).displacement_mm(p, state["contraction"])
    if scene.motion.kind in RESPIRATORY_KINDS:
        moved += respiratory_displacement_mm(moved, state["diaphragm_offset_mm"] - mask_state["diaphragm_offset_mm"],
                                             _dome_z_mm(scene))
    return moved - p


def march_wall(scene: Scene, carm: CArm, catheter: Catheter) -> np.ndarray | None:
    """Sharp area densities of a moved catheter's wall (None: the scene's own, marched as usual)."""
    if catheter is scene.catheter:
        return None
    return _march_alone(scene, carm, catheter.wall_volume(scene._displaced(), f"{WALL_NAME}_moving"), scene.projector)


def _march_alone(scene: Scene, carm: CArm, volume: ProjectorVolume, proj: Projector) -> np.ndarray:
    """Sharp area densities of a volume not in ``proj`` (a moved copy), in ``proj``'s material columns."""
    one = Projector([volume], spectrum=proj.spectrum, mode=proj.mode, method=proj.method, step_mm=proj.step_mm,
                    threads=proj.threads, device=scene.device, backend=scene.backend)
    area = np.zeros((carm.sensor_height, carm.sensor_width, len(proj.materials)))
    area[..., [proj.materials.index(name) for name in one.materials]] = one.march(carm, volume.name)
    return area


def ct_at(scene: Scene, state: dict[str, float], mask_state: dict[str, float]) -> ProjectorVolume:
    """The CT's projector volume in a frame of ``state``: its heart at the frame's contraction
    (:func:`~ddsa_sim.scene.beating_heart.beating_ct`), then moved by the breathing between the
    mask's time and the frame's (:func:`~ddsa_sim.scene.cardiorespiratory.respiratory_ct`); the
    scene's own volume when neither moves it."""
    vol = scene.projector.volumes["ct"]
    if scene.motion.kind in CARDIAC_KINDS:
        vol = beating_ct(vol, heart_motion(scene), state["contraction"])
    offset = state["diaphragm_offset_mm"] - mask_state["diaphragm_offset_mm"]
    if scene.motion.kind in RESPIRATORY_KINDS:
        vol = respiratory_ct(vol, offset, _dome_z_mm(scene))
    return vol


def march_moving_ct(scene: Scene, carm: CArm, state: dict[str, float], mask_state: dict[str, float]) -> np.ndarray | None:
    """Sharp area densities of the CT in a frame of ``state`` (:func:`ct_at`); None when it is the
    scanned CT (at contraction 0 and the mask's breathing state)."""
    moved = ct_at(scene, state, mask_state)
    if moved is scene.projector.volumes["ct"]:
        return None
    moved.name = "ct_moving"  # its own slot in a device cache
    return _march_alone(scene, carm, moved, scene.projector)


def march_moving_vessels(scene: Scene, carm: CArm, t_s: float | None, moves: dict[str, np.ndarray],
                         catheter: Catheter | None = None) -> dict[str, np.ndarray]:
    """Sharp area densities of every vessel volume at fill time ``t_s``, each moved by ``moves[name]``;
    a catheter's lumen is ``catheter``'s (moved by :func:`catheter_motion`; default: the scene's).

    With cardiac motion a centreline tree is re-voxelized with its nodes moved and its radii kept
    (the lumen keeps its calibre; the fill of each node is the unmoved tree's at ``t_s``); a fraction
    volume (and a tree under respiratory motion only, a translation) is marched through the map itself.
    """
    proj = scene.projector_at(t_s)
    out = {}
    for i, name in enumerate(scene.vessel_names):
        src, w = scene.vessels[i] if i < len(scene.vessels) else None, moves[name]  # a catheter lumen: no source
        if name == LUMEN_NAME and catheter is not None and catheter is not scene.catheter:
            vol = catheter.lumen_volume(scene.agent_material, scene._displaced(), f"{LUMEN_NAME}_moving")
            out[name] = _march_alone(scene, carm, vol, proj)
            continue
        if not (isinstance(src, TreeVessels) and scene.motion.kind in CARDIAC_KINDS):
            out[name] = proj.march(carm, name, world_from_world=w)
            continue
        tree = src.tree.copy()
        tree.positions_mm = src.tree.positions_mm @ w[:3, :3].T + w[:3, 3]
        moved = TreeVessels(tree, spacing_mm=src.spacing_mm, name=src.name, max_voxels=src.max_voxels)
        affine, shape = moved.grid
        fraction = voxelize_tree(tree, affine, shape, node_values=src.fill(t_s, scene.bolus))
        ref = proj.volumes[name]
        vol = iodine_volume(f"{name}_moving", fraction, affine, ref.materials[0],
                            scene.lumen_material.density_g_per_cc, ref.displaces)
        out[name] = _march_alone(scene, carm, vol, proj)
    return out
