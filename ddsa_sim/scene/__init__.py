"""DSA scenes: a CT, iodinated vessels placed in it, exposure and effects -> mask / contrast / DSA target.

Walk one frame top-down: :class:`SceneSpec` (what to simulate, in plain values) -> :func:`build_scene`
(the one builder: patient, vessel source, placement) -> :class:`Scene` -> :func:`render_frames` (march
through the projector, record with scatter, noise and detector; several poses: :func:`render_views`).
See docs/dsa.md.

Modules: ``spec`` (the typed spec), ``builder``, ``scene`` (the Scene type), ``render`` (frames at a
pose), ``sources`` (label maps, files, generators), ``vessels`` (trees / fraction volumes -> iodine),
``placement`` (trees in the patient), ``motion`` (patient motion), ``recording`` (scatter, noise,
detector).
"""

from ddsa_sim.scene.builder import Patient, build_scene, load_patient, place_vessels
from ddsa_sim.scene.catheter import CatheterSpec
from ddsa_sim.scene.motion import CARDIAC_KINDS, RESPIRATORY_KINDS, MotionParams
from ddsa_sim.scene.placement import Feeding
from ddsa_sim.scene.recording import Exposure, ScatterSettings
from ddsa_sim.scene.render import (
    TRIPLET_KEYS,
    DSAFrames,
    MarchedView,
    bolus_times,
    render_frames,
    render_sequence,
    render_triplet,
    render_views,
    view_bytes,
)
from ddsa_sim.scene.scene import Scene
from ddsa_sim.scene.spec import CTSpec, EffectsSpec, ExposureSpec, PlacementSpec, SceneSpec, VesselSpec
from ddsa_sim.scene.vessels import BolusParams, FractionVessels, TreeVessels

__all__ = [
    "CARDIAC_KINDS",
    "RESPIRATORY_KINDS",
    "TRIPLET_KEYS",
    "BolusParams",
    "CTSpec",
    "CatheterSpec",
    "DSAFrames",
    "EffectsSpec",
    "Exposure",
    "ExposureSpec",
    "Feeding",
    "FractionVessels",
    "MarchedView",
    "MotionParams",
    "Patient",
    "PlacementSpec",
    "ScatterSettings",
    "Scene",
    "SceneSpec",
    "TreeVessels",
    "VesselSpec",
    "bolus_times",
    "build_scene",
    "load_patient",
    "place_vessels",
    "render_frames",
    "render_sequence",
    "render_triplet",
    "render_views",
    "view_bytes",
]
