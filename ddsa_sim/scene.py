"""A DSA scene: one CT, iodinated vessels placed in it, a C-arm view, spectrum, detector, exposure.

Renders the mask frame (CT only), the contrast frame(s) (CT + iodine, blood displaced by the
agent, patient motion applied to the CT part) and the noise-free, motion-free targets. Exact
definitions of every output are in docs/dsa.md; the arrays match docs/store_format.md.

>>> scene = Scene(ct, [TreeVessels(tree)])                # doctest: +SKIP
>>> out = render_triplet(scene, carm, np.random.default_rng(0))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.imaging.motion import (
    MotionParams,
    breathing_displacement_px,
    rigid_transform,
    warp_images,
)
from ddsa_sim.imaging.recording import (
    Exposure,
    ScatterSettings,
    check_detector_range,
    record,
    scatter_image,
    to_neglog,
)
from ddsa_sim.imaging.vessels import (
    BolusParams,
    FractionVessels,
    TreeVessels,
    VesselSource,
)
from ddsa_sim.physics.attenuation import displaced_blood_g_per_mg_iodine
from ddsa_sim.physics.detector import Detector
from ddsa_sim.physics.spectra import Spectrum
from ddsa_sim.projector import Projector, ProjectorVolume
from ddsa_sim.volumes import Volume

__all__ = [
    "TRIPLET_KEYS",
    "BolusParams",
    "DSAFrames",
    "Exposure",
    "FractionVessels",
    "MotionParams",
    "ScatterSettings",
    "Scene",
    "TreeVessels",
    "bolus_times",
    "render_frames",
    "render_sequence",
    "render_triplet",
]

#: Arrays of docs/store_format.md, plus ``conventional_dsa``.
TRIPLET_KEYS = ("mask", "contrast", "contrast_clean", "dsa_target", "iodine_mg_per_cm2", "vessel_mask",
                "conventional_dsa")


@dataclass
class Scene:
    """Everything needed to render DSA frames of one patient at any C-arm pose.

    Parameters
    ----------
    ct : Volume
        CT in HU (LPS mm). Its ``materials`` masks are used when present (e.g. from
        :func:`ddsa_sim.volumes.ct_with_materials` with a label map), else HU thresholds.
    vessels : sequence of TreeVessels or FractionVessels
        Iodinated lumen, in world mm (place trees with :mod:`ddsa_sim.imaging.placement`).
    spectrum : str, dict or Spectrum
        Tube spectrum (physics.spectra.get_spectrum), default DeepDRR's ``"90KV_AL40"``.
    detector : Detector
        Mode (energy-integrating / photon-counting), gain, bit depth, blur, electronic noise.
    exposure : Exposure
        Photons per pixel, per mm^2 or from mAs; default DeepDRR's 1e4 photons per 0.194 mm pixel
        scaled to the detector's pixel area.
    iodine_mg_per_ml : float
        Iodine concentration of the iodinated blood in a full lumen (mgI/ml). Default 100: a
        selective intra-arterial injection of a 300-350 mgI/ml agent mixed with blood about 1:2.
    agent_mg_i_per_ml : float
        Concentration of the injected agent (for the blood displaced per mg of iodine).
    displaced_material : str
        CT material the agent displaces; ``"auto"``: ``"blood"`` when the CT has a blood material,
        else ``"soft tissue"`` (a synthetic lumen sits in soft tissue).
    bolus : BolusParams
        Fill state over time for trees (sequences).
    motion : MotionParams
        Patient motion between the mask and each contrast frame.
    noise : bool
        Quantum (Poisson) and electronic noise on the recorded frames.
    noise_correlation : str or float
        Noise-only correlation kernel: ``"deepdrr3x3"`` (default), ``"none"`` or a Gaussian sigma (px).
    scatter : ScatterSettings
        Scatter kernel superposition and anti-scatter grid (on by default, ratio-10 grid).
    method : {"siddon", "trilinear"}
        Ray-marching method of the projector.
    ct_volume : ProjectorVolume, optional
        The CT's projector volume (named ``"ct"``), built beforehand from ``ct`` and its materials
        (e.g. memoised per CT by the dataset exporter); default: built from ``ct`` on first use.
    """

    ct: Volume
    vessels: Sequence[VesselSource]
    spectrum: str | dict | Spectrum = "90KV_AL40"
    detector: Detector = field(default_factory=Detector)
    exposure: Exposure = field(default_factory=Exposure)
    iodine_mg_per_ml: float = 100.0
    agent_mg_i_per_ml: float = 350.0
    displaced_material: str = "auto"
    bolus: BolusParams = field(default_factory=BolusParams)
    motion: MotionParams = field(default_factory=MotionParams)
    noise: bool = True
    noise_correlation: str | float = "deepdrr3x3"
    scatter: ScatterSettings = field(default_factory=ScatterSettings)
    method: str = "siddon"
    ct_volume: ProjectorVolume | None = field(default=None, repr=False)
    _projector: Projector | None = field(default=None, init=False, repr=False)
    _vessel_cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.vessels:
            raise InputError("scene: needs at least one vessel source")
        if not np.isfinite(self.iodine_mg_per_ml) or self.iodine_mg_per_ml <= 0:
            raise InputError(f"scene iodine_mg_per_ml must be > 0, got {self.iodine_mg_per_ml!r}")
        if self.iodine_mg_per_ml > self.agent_mg_i_per_ml:
            raise InputError(f"scene iodine_mg_per_ml {self.iodine_mg_per_ml:g} exceeds the agent's "
                             f"{self.agent_mg_i_per_ml:g} mgI/ml")
        self.vessels = list(self.vessels)

    # ------------------------------------------------------------------ cached parts
    @property
    def vessel_names(self) -> list[str]:
        return [f"vessels{i}" for i in range(len(self.vessels))]

    @property
    def projector(self) -> Projector:
        """The projector over the CT (built once) and the fully filled vessel volumes."""
        if self._projector is None:
            ct_pv = self.ct_volume if self.ct_volume is not None else ProjectorVolume.from_ct(self.ct, name="ct")
            self._projector = Projector([ct_pv, *self._iodine_volumes(None)], spectrum=self.spectrum,
                                        mode=self.detector.mode, method=self.method)
        return self._projector

    def _displaced(self) -> str:
        if self.displaced_material != "auto":
            return self.displaced_material
        mats = self.ct_volume.materials if self.ct_volume is not None else (self.ct.materials or {})
        return "blood" if "blood" in mats else "soft tissue"

    def _iodine_volumes(self, t_s: float | None) -> list[ProjectorVolume]:
        """Iodine volumes at fill time ``t_s`` (None = full), voxelized once per time and cached."""
        key = None if t_s is None else round(float(t_s), 9)
        if key not in self._vessel_cache:
            g_per_g = 1000.0 * displaced_blood_g_per_mg_iodine(self.agent_mg_i_per_ml)
            vols = []
            for name, src in zip(self.vessel_names, self.vessels):
                vols.append(src.iodine_volume(name, t_s, self.bolus, self.iodine_mg_per_ml, self._displaced(), g_per_g))
            self._vessel_cache[key] = vols
        return self._vessel_cache[key]

    def end_time_s(self) -> float:
        """Time (s) at which every tree is filled (the bolus front reached its farthest node)."""
        return max(src.end_time_s(self.bolus) for src in self.vessels)

    # ------------------------------------------------------------------ marching
    def march_vessels(self, carm: CArm, t_s: float | None) -> dict[str, np.ndarray]:
        """Area densities (g/cm^2, (H, W, M)) of every vessel volume at fill time ``t_s``."""
        proj = self.projector
        out = {}
        for v in self._iodine_volumes(t_s):
            proj.set_volume(v)
            out[v.name] = proj.march(carm, v.name)
        return out

    def march_ct_moved(self, carm: CArm, world_from_world: np.ndarray) -> np.ndarray:
        """Area densities of the CT after a rigid world transform, columns as the scene projector's."""
        return self.projector.march(carm, "ct", world_from_world=world_from_world)

    def check_view(self, carm: CArm) -> None:
        """Raise InputError when the CT or a vessel volume is outside the field of view."""
        proj = self.projector
        proj.check_in_view(carm, "ct")
        for name, src in zip(self.vessel_names, self.vessels):
            try:
                proj.check_in_view(carm, name)
            except InputError as exc:
                raise InputError(f"vessels {getattr(src, 'name', name)!r}: {str(exc).split(': ', 1)[-1]}"
                                 if "behind" in str(exc) else
                                 f"vessels {getattr(src, 'name', name)!r} are entirely outside the field of view at "
                                 f"alpha={carm.alpha:g}, beta={carm.beta:g}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description of the scene's physics settings."""
        spec = self.projector.spectrum
        return {
            "ct": self.ct.name, "vessels": [getattr(v, "name", "") for v in self.vessels],
            "spectrum": spec.name, "detector": self.detector.to_dict(),
            "exposure": {"photons_per_pixel": self.exposure.photons_per_pixel,
                         "photons_per_mm2": self.exposure.photons_per_mm2, "mas": self.exposure.mas},
            "iodine_mg_per_ml": self.iodine_mg_per_ml, "agent_mg_i_per_ml": self.agent_mg_i_per_ml,
            "displaced_material": self._displaced(), "noise": self.noise,
            "noise_correlation": self.noise_correlation, "scatter": self.scatter.enabled,
            "grid": None if self.scatter.grid is None else [self.scatter.grid.primary_transmission,
                                                            self.scatter.grid.scatter_transmission],
            "motion": self.motion.kind, "method": self.method,
            "bolus": {"velocity_mm_per_s": self.bolus.velocity_mm_per_s, "sigma_s": self.bolus.sigma_s,
                      "mode": self.bolus.mode},
        }


@dataclass
class DSAFrames:
    """One view: the mask frame and T contrast frames (all float32 unless noted).

    Attributes
    ----------
    mask, mask_clean : (H, W)
        Recorded and expected (noise-free, scatter included) -ln(I/I0) of the CT-only frame.
    contrast, contrast_clean, dsa_target, conventional_dsa, iodine_mg_per_cm2 : (T, H, W)
    vessel_mask : (T, H, W) uint8
    times_s : (T,) float64, NaN for a fully filled frame
    mask_scatter : (H, W) float64, scatter of the mask frame relative to the flat field (0 if off)
    mask_primary : (H, W) float64, primary I/I0 of the mask frame
    photons_per_pixel : float, N0 used
    motion : list of dict, per frame the motion applied (kind and parameters)
    """

    mask: np.ndarray
    mask_clean: np.ndarray
    contrast: np.ndarray
    contrast_clean: np.ndarray
    dsa_target: np.ndarray
    conventional_dsa: np.ndarray
    iodine_mg_per_cm2: np.ndarray
    vessel_mask: np.ndarray
    times_s: np.ndarray
    mask_scatter: np.ndarray
    mask_primary: np.ndarray
    photons_per_pixel: float
    motion: list[dict]

    def frame(self, k: int = -1) -> dict[str, np.ndarray]:
        """The arrays of :data:`TRIPLET_KEYS` for contrast frame ``k``."""
        return {"mask": self.mask, "contrast": self.contrast[k], "contrast_clean": self.contrast_clean[k],
                "dsa_target": self.dsa_target[k], "iodine_mg_per_cm2": self.iodine_mg_per_cm2[k],
                "vessel_mask": self.vessel_mask[k], "conventional_dsa": self.conventional_dsa[k]}


def _moved_ct(scene: Scene, carm: CArm, a_ct: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    m = scene.motion
    if m.kind == "none":
        return a_ct, {"kind": "none"}
    if m.kind == "rigid":
        t = rigid_transform(rng, m.max_translation_mm, m.max_rotation_deg, np.asarray(carm.isocenter_mm))
        return scene.march_ct_moved(carm, t), {"kind": "rigid", "world_from_world": t.tolist()}
    u = breathing_displacement_px(rng, carm, m.amplitude_mm, m.smoothness)
    return warp_images(a_ct, u), {"kind": "elastic", "max_displacement_px": float(np.abs(u).max())}


def render_frames(scene: Scene, carm: CArm, rng: np.random.Generator,
                  times_s: Sequence[float | None] = (None,)) -> DSAFrames:
    """Render the mask and one contrast frame per fill time at one C-arm pose.

    Parameters
    ----------
    scene : Scene
    carm : CArm
        The view (pose, detector size and pixel).
    rng : numpy.random.Generator
        Source of every random choice; seeds for the motion, the mask noise and each contrast
        frame's noise are drawn from it first, so switching motion on or off does not change the
        noise realisations.
    times_s : sequence of float or None
        Bolus time of each contrast frame (s); None = fully filled lumen.

    Returns
    -------
    DSAFrames
    """
    if not isinstance(rng, np.random.Generator):
        raise InputError("rng must be a numpy.random.Generator")
    times = list(times_s)
    if not times:
        raise InputError("render: at least one contrast frame (times_s) is needed")
    seeds = rng.integers(0, 2**63 - 1, size=2 + len(times))
    rng_motion = np.random.default_rng(int(seeds[0]))
    proj = scene.projector
    scene.check_view(carm)
    n0 = scene.exposure.n0(proj.spectrum, carm)
    check_detector_range(scene.detector, n0)
    i_iodine = proj.materials.index("iodine")

    def recorded(primary: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = scatter_image(primary, carm, proj.spectrum, proj.mode, scene.scatter)
        total = primary + s
        rec = record(total, n0, scene.detector, np.random.default_rng(int(seed)), scene.noise,
                     scene.noise_correlation)
        return to_neglog(rec), to_neglog(total), s

    a_ct = proj.march(carm, "ct")
    mask_primary = proj.intensity(proj.combine({"ct": a_ct}, ["ct"])).astype(np.float64)
    mask, mask_clean, mask_scatter = recorded(mask_primary, seeds[1])
    mask_primary_nl = to_neglog(mask_primary)

    out: dict[str, list] = {k: [] for k in ("contrast", "contrast_clean", "dsa_target", "conventional_dsa",
                                            "iodine_mg_per_cm2", "vessel_mask", "motion")}
    for k, t in enumerate(times):
        a_v = scene.march_vessels(carm, t)
        names = ["ct", *a_v]
        iodine = sum(a[..., i_iodine] for a in a_v.values()) * 1000.0  # mg/cm^2
        # only rays through a vessel volume change: the others keep the mask's intensity (one
        # spectrum pass over a few pixels instead of all; the target is exactly 0 there)
        hit = np.zeros(a_ct.shape[:-1], dtype=bool)
        for a in a_v.values():
            hit |= np.any(a != 0, axis=-1)
        unmoved = mask_primary.astype(np.float32)
        unmoved[hit] = proj.intensity(proj.combine({"ct": a_ct[hit], **{n: a[hit] for n, a in a_v.items()}}, names))
        target = to_neglog(unmoved) - mask_primary_nl  # float32 arithmetic, exactly 0 where no iodine
        a_moved, info = _moved_ct(scene, carm, a_ct, rng_motion)
        primary = unmoved if info["kind"] == "none" else proj.intensity(proj.combine({"ct": a_moved, **a_v}, names))
        contrast, contrast_clean, _ = recorded(primary.astype(np.float64), seeds[2 + k])
        out["contrast"].append(contrast)
        out["contrast_clean"].append(contrast_clean)
        out["dsa_target"].append(target.astype(np.float32))
        out["conventional_dsa"].append(contrast - mask)
        out["iodine_mg_per_cm2"].append(iodine.astype(np.float32))
        out["vessel_mask"].append((iodine > 0).astype(np.uint8))
        out["motion"].append(info)
    stacked = {k: np.stack(v) for k, v in out.items() if k != "motion"}
    return DSAFrames(mask=mask, mask_clean=mask_clean, times_s=np.array([np.nan if t is None else t for t in times]),
                     mask_scatter=mask_scatter, mask_primary=mask_primary, photons_per_pixel=n0,
                     motion=out["motion"], **stacked)


def render_triplet(scene: Scene, carm: CArm, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The arrays of one dataset sample (docs/store_format.md) plus ``conventional_dsa``.

    Returns
    -------
    dict
        ``mask``, ``contrast``, ``contrast_clean``, ``dsa_target``, ``iodine_mg_per_cm2`` (float32,
        (H, W)), ``vessel_mask`` (uint8, (H, W)) and ``conventional_dsa`` (float32, contrast - mask);
        fully filled vessels.
    """
    return render_frames(scene, carm, rng).frame(0)


def bolus_times(scene: Scene, n_frames: int) -> list[float | None]:
    """``n_frames`` bolus times ending when every tree is filled: ``t_k = t_end (k + 1) / n``.

    One frame means fully filled (None).
    """
    if n_frames < 1:
        raise InputError(f"frames must be >= 1, got {n_frames}")
    if n_frames == 1:
        return [None]
    t_end = scene.end_time_s()
    return [t_end * (k + 1) / n_frames for k in range(n_frames)]


def render_sequence(scene: Scene, carm: CArm, rng: np.random.Generator, n_frames: int) -> DSAFrames:
    """A bolus sequence: the mask and ``n_frames`` contrast frames over the arterial filling."""
    return render_frames(scene, carm, rng, bolus_times(scene, n_frames))
