"""The Scene type: one CT, iodinated vessels placed in it, spectrum, detector, exposure and effects.

A Scene holds what does not change between C-arm poses; :mod:`ddsa_sim.scene.render` turns it and a
pose into DSA frames. Build one from a typed spec with :func:`ddsa_sim.scene.build_scene`, or directly:

>>> scene = Scene(ct, [TreeVessels(tree)])                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.physics.attenuation import Material, get_material, iodinated_blood
from ddsa_sim.physics.blur import BlurSettings, detector_sigma_mm, focal_spot_sigma_mm, gaussian_blur
from ddsa_sim.physics.collimation import EXPOSED_OPEN_FRACTION, Collimator, open_fraction, transmission
from ddsa_sim.physics.detector import Detector, integrate_spectrum
from ddsa_sim.physics.heel import HeelBands, HeelSettings, heel_bands, heel_intensity
from ddsa_sim.physics.spectra import Spectrum
from ddsa_sim.projector import Projector, ProjectorVolume
from ddsa_sim.scene.catheter import LUMEN_NAME, WALL_NAME, Catheter
from ddsa_sim.scene.motion import MotionParams
from ddsa_sim.scene.recording import Exposure, ScatterSettings, frame_quanta
from ddsa_sim.scene.vessels import BolusParams, FractionVessels, TreeVessels, VesselSource
from ddsa_sim.volumes import Volume
from vessel_models.tree import VesselTree

__all__ = ["Scene"]


@dataclass
class Scene:
    """Everything needed to render DSA frames of one patient at any C-arm pose.

    Parameters
    ----------
    ct : Volume
        CT in HU (LPS mm). Its ``materials`` masks are used when present (e.g. from
        :func:`ddsa_sim.volumes.ct_with_materials` with a label map), else HU thresholds.
    vessels : sequence of TreeVessels or FractionVessels
        Iodinated lumen, in world mm (place trees with :mod:`ddsa_sim.scene.placement`).
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
    agent_iodine_mg_per_ml : float
        Iodine concentration of the injected agent, iohexol solution (350 mgI/ml, 1.406 g/ml).
        The lumen is the volume mixture :func:`~ddsa_sim.physics.attenuation.iodinated_blood`: at C
        mgI/ml a fraction C/350 of its volume is agent solution (molecule and water), the rest blood.
    displaced_material : str
        CT material the lumen's iodinated blood takes the place of (volume for volume, at the
        material's nominal density); ``"auto"``: ``"blood"`` when the CT has a blood material, else
        ``"soft tissue"`` (a synthetic lumen sits in soft tissue).
    bolus : BolusParams
        Fill state over time for trees (sequences).
    catheter : Catheter, optional
        A catheter (:mod:`ddsa_sim.scene.catheter`): its wall in the mask and every contrast frame,
        its lumen full of the agent solution (``agent_iodine_mg_per_ml``) in the contrast frames.
    motion : MotionParams
        Patient motion between the mask and each contrast frame.
    noise : bool
        Quantum (Poisson) and electronic noise on the recorded frames.
    noise_correlation : str or float
        Noise-only correlation kernel: ``"deepdrr3x3"`` (default), ``"none"`` or a Gaussian sigma (px).
    scatter : ScatterSettings
        Scatter kernel superposition and anti-scatter grid (on by default, ratio-10 grid).
    blur : BlurSettings
        Focal-spot blur (each volume at its own depth) and detector light spread; on by default.
        Both act on every frame and on the noise-free targets (physics.blur).
    collimator : Collimator, optional
        Blades and iris shaping the field (physics.collimation); None (default) or an open one: the
        whole detector is exposed. Outside the field the frames record leakage and scatter only and
        the targets are 0 (docs/dsa.md).
    heel : HeelSettings
        Heel effect: SpekPy spectra in a few bands along the anode direction, interpolated across
        the field (physics.heel); on by default (SpekPy spectra only).
    method : {"trilinear", "siddon"}
        Ray-marching method of the projector: trilinear (default; smooth, no CT slice pattern in the
        frames) or Siddon (exact voxel traversal; stamps thick slices into every mask as bands).
    device : str
        ``"cpu"`` (default) or ``"cuda"`` / ``"cuda:N"``: where the projector marches (any device
        but ``"cpu"`` uses the torch backend, which needs ``method="trilinear"``).
    backend : {"numba", "torch"}
        Kernel on the CPU; ``"torch"`` runs the GPU code path on the CPU (tests, machines without numba speed).
    supersample : int
        Rays per pixel side: each pixel records the mean intensity of ``supersample`` x ``supersample``
        rays spread over its area, as a detector integrates over its pixel (docs/physics.md, "Pixel
        aperture"); marching and spectral passes cost ``supersample^2``. 1 (default): one ray through each
        pixel's centre, which aliases lumens and catheters thinner than a few pixels into dashes.
    ct_volume : ProjectorVolume, optional
        The CT's projector volume (named ``"ct"``), built beforehand from ``ct`` and its materials
        (e.g. memoised per CT by the dataset exporter); default: built from ``ct`` on first use.
    heart : bool (I, J, K) on the CT's grid, optional
        The labelled heart (a label map's ``heart``): under cardiac motion the CT's tissue there and in
        the first tree's convex hull beats with the tree (:mod:`ddsa_sim.scene.beating_heart`); default:
        the hull alone.
    """

    ct: Volume
    vessels: Sequence[VesselSource]
    spectrum: str | dict | Spectrum = "90KV_AL40"
    detector: Detector = field(default_factory=Detector)
    exposure: Exposure = field(default_factory=Exposure)
    iodine_mg_per_ml: float = 100.0
    agent_iodine_mg_per_ml: float = 350.0
    displaced_material: str = "auto"
    bolus: BolusParams = field(default_factory=BolusParams)
    catheter: Catheter | None = None
    motion: MotionParams = field(default_factory=MotionParams)
    noise: bool = True
    noise_correlation: str | float = "deepdrr3x3"
    scatter: ScatterSettings = field(default_factory=ScatterSettings)
    blur: BlurSettings = field(default_factory=BlurSettings)
    heel: HeelSettings = field(default_factory=HeelSettings)
    collimator: Collimator | None = None
    method: str = "trilinear"
    device: str = "cpu"
    backend: str = "numba"
    supersample: int = 1
    ct_volume: ProjectorVolume | None = field(default=None, repr=False)
    heart: np.ndarray | None = field(default=None, repr=False)
    _projectors: dict = field(default_factory=dict, init=False, repr=False)
    _heel_bands_cache: dict = field(default_factory=dict, init=False, repr=False)
    _motion_cache: dict = field(default_factory=dict, init=False, repr=False)  # heart frames, diaphragm level

    def __post_init__(self) -> None:
        if not isinstance(self.vessels, Sequence):
            raise InputError(f"scene vessels must be a list of TreeVessels / FractionVessels, got "
                             f"{type(self.vessels).__name__}")
        if not self.vessels:
            raise InputError("scene: needs at least one vessel source")
        for v in self.vessels:
            if not isinstance(v, (TreeVessels, FractionVessels)):
                hint = " (wrap a tree: TreeVessels(tree))" if isinstance(v, VesselTree) else ""
                raise InputError(f"scene vessels must be TreeVessels / FractionVessels, got {type(v).__name__}{hint}")
        if not np.isfinite(self.iodine_mg_per_ml) or self.iodine_mg_per_ml <= 0:
            raise InputError(f"scene iodine_mg_per_ml must be > 0, got {self.iodine_mg_per_ml!r}")
        if self.iodine_mg_per_ml > self.agent_iodine_mg_per_ml:
            raise InputError(f"scene iodine_mg_per_ml {self.iodine_mg_per_ml:g} exceeds the agent's "
                             f"{self.agent_iodine_mg_per_ml:g} mgI/ml")
        if isinstance(self.supersample, bool) or int(self.supersample) != self.supersample or self.supersample < 1:
            raise InputError(f"scene supersample must be an integer >= 1, got {self.supersample!r}")
        self.supersample = int(self.supersample)
        self.vessels = list(self.vessels)
        if self.heart is not None and np.shape(self.heart) != tuple(self.ct.data.shape):
            raise InputError(f"scene heart mask has shape {np.shape(self.heart)}, not the CT's {tuple(self.ct.data.shape)}")

    # ------------------------------------------------------------------ cached parts
    @property
    def vessel_names(self) -> list[str]:
        """Volumes of the contrast frames only: the vessel sources, then the catheter's lumen."""
        return [f"vessels{i}" for i in range(len(self.vessels))] + ([LUMEN_NAME] if self.catheter else [])

    @property
    def projector(self) -> Projector:
        """The projector over the CT and the fully filled vessel volumes."""
        return self.projector_at(None)

    def projector_at(self, t_s: float | None) -> Projector:
        """The projector over the CT and the vessel volumes at bolus time ``t_s`` (None = full).

        One projector per fill time, built once and cached; all share the CT's projector volume
        (built once, or ``ct_volume``) and the full-fill projector's spectrum, so every fill time has
        the same materials and attenuation table.
        """
        key = None if t_s is None else round(float(t_s), 9)
        if key not in self._projectors:
            if self.ct_volume is None:
                self.ct_volume = ProjectorVolume.from_ct(self.ct, name="ct")
            spectrum = self.spectrum if key is None else self.projector.spectrum
            tools = [self.catheter.wall_volume(self._displaced())] if self.catheter else []
            self._projectors[key] = Projector([self.ct_volume, *tools, *self._iodine_volumes(t_s)], spectrum=spectrum,
                                              mode=self.detector.response, method=self.method, device=self.device,
                                              backend=self.backend)
        return self._projectors[key]

    def _displaced(self) -> str:
        if self.displaced_material != "auto":
            return self.displaced_material
        mats = self.ct_volume.materials if self.ct_volume is not None else (self.ct.materials or {})
        return "blood" if "blood" in mats else "soft tissue"

    @property
    def lumen_material(self) -> Material:
        """The iodinated blood of a full lumen (blood + agent solution, volume mixture)."""
        return iodinated_blood(self.iodine_mg_per_ml, "iohexol", self.agent_iodine_mg_per_ml)

    @property
    def iodine_mg_per_g_lumen(self) -> float:
        """mg of iodine per g of lumen material: area density (g/cm^2) -> iodine (mg/cm^2)."""
        return self.iodine_mg_per_ml / self.lumen_material.density_g_per_cc

    def _iodine_volumes(self, t_s: float | None) -> list[ProjectorVolume]:
        """Iodinated-blood volumes of every vessel source at fill time ``t_s`` (None = full)."""
        lumen = self.lumen_material
        displaced = self._displaced()
        g_per_g = get_material(displaced).density_g_per_cc / lumen.density_g_per_cc
        out = [src.iodine_volume(name, t_s, self.bolus, lumen.name, lumen.density_g_per_cc, {displaced: g_per_g})
               for name, src in zip(self.vessel_names, self.vessels)]
        if self.catheter:  # the lumen holds the injected solution itself
            out.append(self.catheter.lumen_volume(self.agent_material, displaced))
        return out

    @property
    def agent_material(self) -> Material:
        """The injected agent solution (iohexol at ``agent_iodine_mg_per_ml``), as in the catheter."""
        return iodinated_blood(self.agent_iodine_mg_per_ml, "iohexol", self.agent_iodine_mg_per_ml)

    def iodine_mg_per_cm2(self, areas: dict[str, np.ndarray]) -> np.ndarray:
        """Projected iodine (mg/cm^2) of the contrast-frame volumes' area densities (g/cm^2, by name):
        the vessels' iodinated blood and the catheter lumen's agent solution."""
        proj = self.projector
        lumen = proj.materials.index(self.lumen_material.name)
        total = sum(a[..., lumen] for n, a in areas.items() if n != LUMEN_NAME) * self.iodine_mg_per_g_lumen
        if LUMEN_NAME in areas:
            agent = self.agent_material
            per_g = self.agent_iodine_mg_per_ml / agent.density_g_per_cc
            total = total + areas[LUMEN_NAME][..., proj.materials.index(agent.name)] * per_g
        return total

    def end_time_s(self) -> float:
        """Time (s) at which every tree is filled (the bolus front reached its farthest node)."""
        return max(src.end_time_s(self.bolus) for src in self.vessels)

    # ------------------------------------------------------------------ marching
    def march_ct(self, carm: CArm, ct_area: np.ndarray | None = None,
                 wall_area: np.ndarray | None = None) -> np.ndarray:
        """Area densities (g/cm^2, (H, W, M)) of the mask's volumes, each focal-spot blurred at its depth:
        the CT (marched here, or ``ct_area`` marched ahead) and the catheter's wall (marched here, or
        ``wall_area``: a moved wall's sharp area densities, blurred at the unmoved wall's depth)."""
        a_ct = self.focal_spot_blur(carm, "ct", self.projector.march(carm, "ct") if ct_area is None else ct_area)
        return self._with_wall(carm, a_ct, None, wall_area)

    def _with_wall(self, carm: CArm, a_ct: np.ndarray, world_from_world: np.ndarray | None,
                   wall_area: np.ndarray | None = None) -> np.ndarray:
        if self.catheter is None:
            return a_ct
        if wall_area is None:
            wall_area = self.projector.march(carm, WALL_NAME, world_from_world=world_from_world)
        wall = self.focal_spot_blur(carm, WALL_NAME, wall_area)
        return self.projector.combine({"ct": a_ct, WALL_NAME: wall}, ["ct", WALL_NAME])

    def march_vessels(self, carm: CArm, t_s: float | None) -> dict[str, np.ndarray]:
        """Area densities (g/cm^2, (H, W, M)) of every vessel volume at fill time ``t_s`` (sharp: blur
        each with :meth:`focal_spot_blur`)."""
        proj = self.projector_at(t_s)
        return {name: proj.march(carm, name) for name in self.vessel_names}

    def march_ct_moved(self, carm: CArm, world_from_world: np.ndarray) -> np.ndarray:
        """Area densities of the CT and the catheter's wall after a rigid world transform (blurred as
        :meth:`march_ct`)."""
        moved = self.projector.march(carm, "ct", world_from_world=world_from_world)
        return self._with_wall(carm, self.focal_spot_blur(carm, "ct", moved), world_from_world)

    # ------------------------------------------------------------------ blur
    def focal_spot_blur(self, carm: CArm, volume: str, area: np.ndarray) -> np.ndarray:
        """``area`` blurred by the focal spot at the depth of the volume's centre (no-op for a point source)."""
        if self.blur.focal_spot_mm == 0:
            return area
        centre = self.projector.volumes[volume].corners_mm().mean(axis=0)
        depth = float((centre - carm.source_mm) @ carm.principal_ray)
        sigma = focal_spot_sigma_mm(self.blur.focal_spot_mm, depth, carm.source_to_detector_distance)
        cols = self.projector.material_indices(volume)  # the march writes only these; the others stay 0
        out = np.zeros(area.shape)
        out[..., cols] = gaussian_blur(area[..., cols], sigma / carm.pixel_mm)
        return out

    def intensity(self, proj: Projector, carm: CArm, area: np.ndarray,
                  pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``(I, Q)`` of area densities (H, W, M), or of the ``pixels`` (bool (H, W)) given as
        ``area`` (N, M): the relative intensity and its relative second signal moment (the noise
        model's, :func:`ddsa_sim.physics.detector.integrate_spectrum`), one spectral pass.

        With the heel effect on, ``I`` and ``Q`` come from each pixel's local spectrum (both
        interpolated between the heel bands, each band relative to its own flat field).
        """
        heel = self._heel(proj, carm)
        if heel is None:
            return integrate_spectrum(area, proj.attenuation_cm2_per_g, proj.spectrum, proj.mode, np.float32,
                                      proj.threads, second_moment=True)
        bands, weights = heel
        return heel_intensity(area, proj.attenuation_cm2_per_g, bands,
                              weights if pixels is None else weights[pixels.reshape(-1)],
                              proj.mode, proj.threads, second_moment=True)

    def flat_field_quanta(self, proj: Projector, carm: CArm, n0: float) -> np.ndarray:
        """(H, W) float64 noise-equivalent quanta of each pixel's flat field behind the grid, for ``n0`` photons
        per pixel on the central ray (:func:`~ddsa_sim.scene.recording.frame_quanta`).

        A pixel off the central ray, at angle theta, receives ``cos^3(theta)`` of the central ray's photons: the
        inverse-square law over its longer distance (``cos^2``) and its flat face turned away from the ray
        (``cos``). With the heel effect each band's quanta are its own spectrum's (efficiency and Swank factor)
        at its own photon count, ``n0`` times :attr:`~ddsa_sim.physics.heel.HeelBands.relative_fluence`, SpekPy's
        off-axis fluence, which carries the heel effect and the inverse-square law along the anode direction;
        they are interpolated between the bands like ``I`` and ``Q``, and the inverse-square law across and the
        obliquity are added. The detector's gain correction evens all this out of the mean, not of the noise.
        """
        h, w, sdd = carm.sensor_height, carm.sensor_width, carm.source_to_detector_distance
        v = (np.arange(h) + 0.5 - h / 2)[:, None] * carm.pixel_mm  # pixel centres from the principal point (mm)
        u = (np.arange(w) + 0.5 - w / 2)[None, :] * carm.pixel_mm
        r2 = sdd**2 + u**2 + v**2
        obliquity = sdd / np.sqrt(r2)
        heel = self._heel(proj, carm)
        if heel is None:
            return frame_quanta(proj.spectrum, self.detector, n0, self.scatter) * obliquity * (sdd**2 / r2)
        bands = heel[0]
        per_band = np.array([frame_quanta(s, self.detector, n0 * r, self.scatter)
                             for s, r in zip(bands.spectra, bands.relative_fluence)])
        line = bands.weights(self._toward_anode_mm(carm)) @ per_band  # one value per detector line
        rows = self.heel.anode[1] == "v"
        along, line = (v, line[:, None]) if rows else (u, line[None, :])
        return line * obliquity * ((sdd**2 + along**2) / r2)

    def _toward_anode_mm(self, carm: CArm) -> np.ndarray:
        """Each detector line's distance from the principal point toward the anode (mm): rows for an anode along
        v, columns along u."""
        n = carm.sensor_height if self.heel.anode[1] == "v" else carm.sensor_width
        return (np.arange(n) + 0.5 - n / 2) * carm.pixel_mm * (1.0 if self.heel.anode[0] == "+" else -1.0)

    def _heel(self, proj: Projector, carm: CArm) -> tuple[HeelBands, np.ndarray] | None:
        """The heel bands of this view's field and every pixel's interpolation weights (float32
        (H*W, K)), kept per spectrum and detector; None with the heel effect off or no off-axis model."""
        if not self.heel.enabled:
            return None
        rows = self.heel.anode[1] == "v"
        n = carm.sensor_height if rows else carm.sensor_width
        key = (proj.spectrum.name, carm.sensor_height, carm.sensor_width, carm.pixel_mm,
               carm.source_to_detector_distance, self.heel)
        if key not in self._heel_bands_cache:
            bands = heel_bands(proj.spectrum, n * carm.pixel_mm / 2, carm.source_to_detector_distance,
                               self.heel.bands)
            weights = None
            if bands is not None:
                line = bands.weights(self._toward_anode_mm(carm)).astype(np.float32)  # (n, K), one per detector line
                weights = np.repeat(line, carm.sensor_width, axis=0) if rows else np.tile(line, (carm.sensor_height, 1))
            self._heel_bands_cache[key] = None if bands is None else (bands, weights)
        return self._heel_bands_cache[key]

    def collimation(self, carm: CArm) -> tuple[np.ndarray, np.ndarray] | None:
        """The collimator's primary transmission as the detector records it (penumbra of the focal
        spot, then the detector's light spread; (H, W) float64) and the exposed field (bool, the
        geometric edge: :data:`~ddsa_sim.physics.collimation.EXPOSED_OPEN_FRACTION`); None without
        a collimator or with an open one. InputError when the field exposes no pixel (it is computed before a
        frame is rendered)."""
        if self.collimator is None or self.collimator.is_open:
            return None
        f = open_fraction(self.collimator, (carm.sensor_height, carm.sensor_width), carm.pixel_mm,
                          self.blur.focal_spot_mm, carm.source_to_detector_distance)
        exposed = f >= EXPOSED_OPEN_FRACTION
        if not exposed.any():
            raise InputError(f"collimation: the field left open exposes no detector pixel (none at least "
                             f"{EXPOSED_OPEN_FRACTION:g} open) of {carm.sensor_height}x{carm.sensor_width} pixels of "
                             f"{carm.pixel_mm:g} mm; open the blades")
        return self.detector_blur(carm, transmission(self.collimator, f)), exposed

    def detector_blur(self, carm: CArm, intensity: np.ndarray) -> np.ndarray:
        """``intensity`` (H, W) blurred by the detector's light spread (no-op when off)."""
        if self.blur.detector_mtf50_cycles_per_mm is None:
            return intensity
        return gaussian_blur(intensity, detector_sigma_mm(self.blur.detector_mtf50_cycles_per_mm) / carm.pixel_mm)

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
                                 f"alpha={carm.alpha_deg:g}, beta={carm.beta_deg:g}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description of the scene's physics settings."""
        spec = self.projector.spectrum
        return {
            "ct": self.ct.name, "vessels": [getattr(v, "name", "") for v in self.vessels],
            "spectrum": spec.name, "detector": self.detector.to_dict(),
            "exposure": {"photons_per_pixel": self.exposure.photons_per_pixel,
                         "photons_per_mm2": self.exposure.photons_per_mm2, "mas": self.exposure.mas,
                         "target_detector_air_kerma_ugy": self.exposure.target_detector_air_kerma_ugy},
            "lumen_material": self.lumen_material.name,
            "catheter": None if self.catheter is None else self.catheter.to_dict(),
            "iodine_mg_per_ml": self.iodine_mg_per_ml, "agent_iodine_mg_per_ml": self.agent_iodine_mg_per_ml,
            "displaced_material": self._displaced(), "noise": self.noise,
            "noise_correlation": self.noise_correlation, "scatter": self.scatter.enabled,
            "grid": None if self.scatter.grid is None else [self.scatter.grid.primary_transmission,
                                                            self.scatter.grid.scatter_transmission],
            "motion": self.motion.kind, "method": self.method, "device": self.device, "backend": self.backend,
            "supersample": self.supersample,
            "blur": self.blur.to_dict(), "heel": self.heel.to_dict(),
            "collimator": None if self.collimator is None else self.collimator.to_dict(),
            "bolus": {"velocity_mm_per_s": self.bolus.velocity_mm_per_s, "sigma_s": self.bolus.sigma_s,
                      "mode": self.bolus.mode, "venous_delay_s": self.bolus.venous_delay_s,
                      "dispersion": self.bolus.dispersion},
        }
