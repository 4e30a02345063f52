"""Batched, device-resident rendering of a :class:`~ddsa_sim.projector.Projector` with the torch backend.

The marching is :class:`~ddsa_sim.projector.kernels_torch.TorchMarcher`; this class adds what the
numba path does on the host (combining volumes with displacement, the spectrum) on device tensors,
through the projector's public accessors only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.physics.detector import NEGLOG_FLOOR, spectral_weights
from ddsa_sim.projector.kernels_torch import TorchMarcher, import_torch
from ddsa_sim.projector.projector import Projector

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["TorchProjector"]


class TorchProjector:
    """Batched, device-resident rendering for a :class:`Projector` (marching, combining, spectrum).

    Everything stays on the device: volumes are uploaded once (cached on the projector's marcher),
    rays are generated there, per-volume area densities, combinations and intensities are torch
    tensors. Only what the caller converts with ``.cpu()`` comes back to the host.

    Parameters
    ----------
    projector : Projector
        Holds the volumes, materials, spectrum, mode and step (``method`` must be ``"trilinear"``).
    """

    def __init__(self, projector: Projector) -> None:
        torch = import_torch()
        if projector.method != "trilinear":
            raise InputError("the torch backend implements method='trilinear' only (use the numba "
                             "backend, device='cpu', for siddon)")
        self.projector = projector
        self.marcher: TorchMarcher = projector.torch_marcher()
        dev, dt = self.marcher.device, self.marcher.dtype
        self._mu = torch.as_tensor(projector.attenuation_cm2_per_g, device=dev, dtype=dt)  # (M, B)
        self._w = torch.as_tensor(spectral_weights(projector.spectrum, projector.mode), device=dev, dtype=dt)

    def march(self, carms: Sequence[CArm], name: str) -> torch.Tensor:
        """Area densities (g/cm^2) of one volume, (V, H, W, M) float64 on the device."""
        p = self.projector
        out = self.marcher.march(p.volumes[name], p.material_indices(name), len(p.materials), carms, p.step_mm)
        return out.mul_(0.1)

    def combine(self, per_volume: dict[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
        """:meth:`Projector.combine` on device tensors (additive volumes, displacement, clipped at 0)."""
        p = self.projector
        total = None
        for name in names:
            a = per_volume[name]
            total = a.clone() if total is None else total + a
            v = p.volumes[name]
            if v.displaces:
                own = a[..., list(p.material_indices(name))].sum(dim=-1)
                for material, g_per_g in v.displaces.items():
                    total[..., p.materials.index(material)] -= g_per_g * own
        if total is None:
            raise InputError("an image needs at least one volume")
        return total.clamp_(min=0.0)

    def intensity(self, area_density: torch.Tensor) -> torch.Tensor:
        """Relative intensity I/I0 of (..., M) area densities (g/cm^2), in the marcher's dtype."""
        torch = import_torch()
        return torch.exp(-(area_density.to(self._mu.dtype) @ self._mu)) @ self._w

    def render(self, carms: Sequence[CArm], images: dict[str, Sequence[str]] | None = None
               ) -> dict[str, dict[str, torch.Tensor]]:
        """A batch of views: ``{image: {"area": (V,H,W,M), "intensity": (V,H,W), "neglog": (V,H,W)}}``.

        Each needed volume is marched once for the whole batch; images are combinations of them.
        """
        torch = import_torch()
        p = self.projector
        images = images or {"image": list(p.volumes)}
        needed = [n for n in p.volumes if any(n in names for names in images.values())]
        for names in images.values():
            for n in names:
                if n not in p.volumes:
                    raise InputError(f"image refers to unknown volume '{n}'; volumes: {list(p.volumes)}")
        per_volume = {n: self.march(carms, n) for n in needed}
        result = {}
        for image, names in images.items():
            a = self.combine(per_volume, names)
            inten = self.intensity(a)
            result[image] = {"area": a, "intensity": inten,
                             "neglog": -torch.log(torch.clamp(inten, min=NEGLOG_FLOOR))}
        return result
