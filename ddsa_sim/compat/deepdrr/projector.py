"""``deepdrr.projector.Projector``: DeepDRR 1.2's projector call shape over :class:`ddsa_sim.projector.Projector`.

What a call returns, as DeepDRR 1.2 with its defaults (``neglog=True``, ``add_noise=False``):

1. ``I`` (keV per photon) = sum_b E_b p_b exp(-sum_m mu_m(E_b) A_m): our relative intensity I/I0
   (energy-integrating) times the spectrum's mean energy sum_b E_b p_b. With ``add_noise``,
   Poisson noise for the photons reaching each pixel (``photon_count`` x its photon transmission, as DeepDRR's
   ``photon_prob * photon_count``), correlated by DeepDRR's 3x3 kernel.
   With ``add_scatter`` / ``scatter_num``, our scatter kernel superposition (not DeepDRR's Monte Carlo).
2. ``intensity_upper_bound`` (keV) clips ``I`` from above.
3. ``neglog=True``: DeepDRR's per-image min-max transform (:func:`ddsa_sim.compat.deepdrr.utils.neglog`),
   values in [0, 1] that are NOT comparable between images; ``neglog=False``: ``I`` itself.

``quantitative=True`` (ours) chooses which negative log step 3 takes: ``-ln(I/I0)`` (after noise,
scatter and the bound), the line integral of attenuation that the DSA pipeline uses, instead of
DeepDRR's min-max one. It is a kind of neglog, so it goes with ``neglog=True`` (the default);
``quantitative=True, neglog=False`` asks for both a log and no log and raises InputError.

Volumes add along each ray (a tool displaces the anatomy it occupies); DeepDRR's ``priorities``,
where a later volume replaces every earlier one inside its whole box, are not reproduced.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.compat.deepdrr.device import MobileCArm
from ddsa_sim.compat.deepdrr.utils import neglog as deepdrr_neglog
from ddsa_sim.compat.deepdrr.vol import Volume
from ddsa_sim.physics.detector import neglog as quantitative_neglog
from ddsa_sim.physics.noise import add_quantum_noise
from ddsa_sim.projector import Projector as NativeProjector
from ddsa_sim.scene.recording import ScatterSettings, scatter_image

__all__ = ["Projector"]

#: DeepDRR's default ray step (world mm).
DEEPDRR_STEP_MM = 0.1


class Projector:
    """Render DRRs of one or more volumes at a :class:`MobileCArm`'s current pose (DeepDRR's call shape).

    Parameters
    ----------
    volume : Volume or list of Volume
        CT volumes and tools (``Mesh``, ``KWire``), each in its own pose.
    priorities : list of int, optional
        Accepted for DeepDRR scripts and ignored (volumes add; tools displace), with a warning.
    device : MobileCArm or str, optional
        DeepDRR's C-arm (the ``carm`` alias also works); or, a string, where to compute: ``"cpu"``
        (numba kernels, default) or ``"cuda"`` / ``"cuda:N"`` (the torch backend).
    step : float
        Ray step, mm (DeepDRR: 0.1).
    mode : {"linear"}
        Trilinear interpolation (the only mode).
    spectrum : str, dict, Spectrum
        ``"60KV_AL35"``, ``"90KV_AL40"`` (default), ``"120KV_AL43"`` or any of our spectra.
    add_scatter, scatter_num
        Either turns on our scatter model (``scatter_num`` is not a photon count here).
    add_noise : bool
        Poisson noise of ``photon_count`` photons per pixel (default off, as DeepDRR).
    photon_count : int
        Photons per pixel without object (DeepDRR: 1e4).
    neglog : bool
        DeepDRR's min-max normalised negative log (default True).
    intensity_upper_bound : float, optional
        Clip of the intensity, keV per photon.
    quantitative : bool
        With ``neglog=True``, return ``-ln(I/I0)`` (ours) instead of DeepDRR's min-max image;
        with ``neglog=False``, an InputError.
    backend : {"numba", "torch"}
        Kernel on the CPU (``device="cpu"``): numba (default) or the torch backend.
    seed : int, optional
        Seed of the noise (a fresh generator per projector).
    threads, max_block_index, source_to_detector_distance, camera_intrinsics, max_mesh_hits, mesh_layers, cuda_device_id
        DeepDRR's CUDA launch, tracing and mesh-rasterisation options: accepted, unused (``device=`` picks the GPU).
    """

    def __init__(self, volume: Volume | Sequence[Volume], priorities: Sequence[int] | None = None,
                 camera_intrinsics=None, device: MobileCArm | str | None = None, step: float = DEEPDRR_STEP_MM,
                 mode: str = "linear", spectrum="90KV_AL40", add_scatter: bool | None = None, scatter_num: int = 0,
                 add_noise: bool = False, photon_count: int = 10000, threads: int = 8, max_block_index: int = 1024,
                 collected_energy: bool = False, neglog: bool = True, intensity_upper_bound: float | None = None,
                 attenuate_outside_volume: bool = False, source_to_detector_distance: float = -1,
                 carm: MobileCArm | None = None, max_mesh_hits: int = 32, mesh_layers: int = 2,
                 cuda_device_id: int | None = None, quantitative: bool = False, backend: str = "numba",
                 seed: int | None = None) -> None:
        self.volumes = list(volume) if isinstance(volume, (list, tuple)) else [volume]
        if not self.volumes or not all(isinstance(v, Volume) for v in self.volumes):
            raise InputError("Projector: volume must be a Volume or a list of Volumes")
        if isinstance(device, str):
            self.compute_device, self.carm = device, carm
        else:
            self.compute_device, self.carm = "cpu", carm if carm is not None else device
        if self.carm is not None and not isinstance(self.carm, MobileCArm):
            raise InputError(f"Projector: carm/device must be a MobileCArm, got {type(self.carm).__name__}")
        if priorities is not None:
            warnings.warn("Projector: priorities are ignored, volumes add along each ray and tools displace "
                          "the anatomy they occupy (docs/deepdrr_migration.md)", stacklevel=2)
        if mode != "linear":
            raise InputError(f"Projector: mode must be 'linear' (trilinear), got {mode!r}")
        if collected_energy:
            raise InputError("Projector: collected_energy=True is not supported (intensity is keV per photon)")
        if attenuate_outside_volume:
            raise InputError("Projector: attenuate_outside_volume=True is not supported (air outside the volumes "
                             "does not attenuate)")
        if not (np.isfinite(photon_count) and photon_count > 0):
            raise InputError(f"Projector: photon_count must be positive, got {photon_count}")
        if scatter_num < 0:
            raise InputError(f"Projector: scatter_num must be non-negative, got {scatter_num}")
        if quantitative and not neglog:
            raise InputError("Projector: quantitative=True returns -ln(I/I0), a negative log; it goes with "
                             "neglog=True (the default), not neglog=False (intensities)")
        if intensity_upper_bound is not None and not intensity_upper_bound > 0:
            raise InputError(f"Projector: intensity_upper_bound must be positive, got {intensity_upper_bound}")
        self.step = float(step)
        self.spectrum = spectrum
        self.add_scatter = bool(add_scatter) or scatter_num > 0
        self.add_noise = bool(add_noise)
        self.photon_count = float(photon_count)
        self.neglog = bool(neglog)
        self.intensity_upper_bound = intensity_upper_bound
        self.quantitative = bool(quantitative)
        self.backend = backend
        self.rng = np.random.default_rng(seed)
        self._native: NativeProjector | None = None
        self._poses: list[bytes] = []
        self._native_args = dict(spectrum=spectrum, method="trilinear", step_mm=self.step,
                                 device=self.compute_device, backend=backend)
        self.native_projector()  # a one-line error for a bad spectrum, step, device or volume now

    # ------------------------------------------------------------------ lifetime
    def initialize(self) -> None:
        """Nothing to allocate up front: volumes are read at each call, where they are posed."""

    def free(self) -> None:
        self._native = None

    def __enter__(self) -> "Projector":
        self.initialize()
        return self

    def __exit__(self, *exc) -> None:
        self.free()

    # ------------------------------------------------------------------ rendering
    def native_projector(self) -> NativeProjector:
        """Our projector over the volumes at their current poses (rebuilt when a pose changed)."""
        poses = [np.asarray(v.world_from_ijk).tobytes() for v in self.volumes]
        if self._native is None or self._poses != poses:
            vols = [v.projector_volume(f"volume{i}") for i, v in enumerate(self.volumes)]
            self._native, self._poses = NativeProjector(vols, **self._native_args), poses
        return self._native

    def project(self, *camera_projections) -> np.ndarray:
        """The image at the C-arm's current pose, float32 (H, W) (see the module docstring)."""
        if camera_projections:
            raise InputError("Projector: call it without camera projections; poses come from the MobileCArm "
                             "(carm.move_to)")
        if self.carm is None:
            raise InputError("Projector: give carm=MobileCArm(...) (or device=) to project")
        view = self.carm.view()
        proj = self.native_projector()
        images = proj.render(view)
        primary = images.intensity["image"].astype(np.float64)
        relative = primary
        if self.add_scatter:
            relative = primary + scatter_image(primary, view, proj.spectrum, proj.mode, ScatterSettings())
        if self.add_noise:  # Poisson on the photons that reach each pixel, as DeepDRR's photon_prob x photon_count
            area = np.stack([images.area_density_g_per_cm2["image"][m] for m in proj.materials], axis=-1)
            transmitted = proj.intensity(area, mode="photon").astype(np.float64) + (relative - primary)  # + scatter
            relative = add_quantum_noise(relative, self.photon_count * transmitted, self.rng, "deepdrr3x3").clip(min=0.0)
        mean_kev = proj.spectrum.mean_energy_kev
        if self.intensity_upper_bound is not None:
            relative = np.minimum(relative, self.intensity_upper_bound / mean_kev)
        if self.quantitative:
            return quantitative_neglog(relative).astype(np.float32)
        kev = relative * mean_kev
        return deepdrr_neglog(kev) if self.neglog else kev.astype(np.float32)

    __call__ = project
