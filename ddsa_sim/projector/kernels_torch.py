"""PyTorch ray-marching backend (CUDA or CPU): the numba trilinear kernel's exact sampling, batched.

Why torch (see docs/gpu.md): it shares PyTorch's CUDA context with the trainer (pycuda's own context
clashed with PyTorch's, the reason DeepDRR moved to CuPy), it runs on the CPU too so CI checks it
against the numba kernel without a GPU, and it adds no dependency.

Sampling is that of :func:`ddsa_sim.projector.kernels_cpu.trilinear_area_density`, step for step:

* the ray is clipped to the volume's outer voxel faces ``[-0.5, n - 0.5]`` (voxel index space);
* samples at ``tmin``, at the planes of the ray's dominant voxel axis inside ``(tmin, tmax)`` (one
  per voxel, or ``m`` per voxel when ``step_mm`` asks for a finer spacing: Joseph's scheme, the grid
  of :func:`~ddsa_sim.projector.kernels_cpu.plane_grid`) and at ``tmax``; trapezoid weights over
  that grid;
* clamped trilinear interpolation (positions clamped to ``[0, n - 1]``), each corner's density going
  to the material of its own label. That equals trilinear interpolation of one channel per material,
  ``rho * [label == l]``, which is what ``grid_sample(align_corners=True, padding_mode="border")``
  computes here in one fused kernel per launch.

Per-ray set-up (clipping, sample counts) is done in float64 like the numba kernel, so both agree on
every sample count; per-sample work runs in ``dtype`` (float32 by default on CUDA) relative to the
ray's entry point, which keeps positions accurate to ~1e-4 voxel.

Volumes are uploaded once per device and dtype and cached; rays are generated on the device from the
view's 4x4 / 3x3 matrices; outputs stay on the device until the caller asks for numpy.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ddsa_sim.projector.volumes import ProjectorVolume

#: samples (rays x steps) per grid_sample launch: ~1 GiB of temporaries in float32 with 3 materials
DEFAULT_SAMPLES_PER_LAUNCH = 1 << 24
_EPS = 1e-12


def import_torch():
    """Import torch or raise a one-line :class:`InputError`."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a core dependency
        raise InputError("the torch backend needs PyTorch: pip install torch") from exc
    return torch


def resolve_device(device: str) -> torch.device:
    """A ``torch.device`` for ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; a clear error when CUDA is missing."""
    torch = import_torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device {device!r} unknown; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} needs an NVIDIA GPU and a CUDA build of PyTorch "
                         f"(torch {torch.__version__}: torch.cuda.is_available() is False); use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {device!r} not supported; use 'cpu' or 'cuda'")
    return dev


def rays_on_device(carms: Sequence[CArm], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World sources (V, 3), unit directions (V, H*W, 3) and lengths to the detector pixels (V, H*W, mm), float64,
    built on ``device``.

    The same arithmetic as :meth:`CArm.ray_directions` (pixel centres at ``(col + 0.5, row + 0.5)``),
    from a few bytes of matrices per view instead of an uploaded ray array.
    """
    torch = import_torch()
    h, w = carms[0].sensor_height, carms[0].sensor_width
    for c in carms:
        if (c.sensor_height, c.sensor_width) != (h, w):
            raise InputError("views batched together must share the detector size; got "
                             f"{h}x{w} and {c.sensor_height}x{c.sensor_width}")
    f64 = torch.float64
    v, u = torch.meshgrid(torch.arange(h, device=device, dtype=f64) + 0.5,
                          torch.arange(w, device=device, dtype=f64) + 0.5, indexing="ij")
    uv1 = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(h * w, device=device, dtype=f64)], dim=1)
    k_inv = torch.as_tensor(np.stack([np.linalg.inv(c.intrinsic) * c.source_to_detector_distance for c in carms]),
                            device=device)  # (V, 3, 3)
    wfc = torch.as_tensor(np.stack([np.linalg.inv(c.camera3d_from_world) for c in carms]), device=device)
    pts_cam = torch.einsum("rk,vjk->vrj", uv1, k_inv)  # (V, R, 3), z = SDD
    pts = torch.einsum("vrk,vjk->vrj", pts_cam, wfc[:, :3, :3]) + wfc[:, None, :3, 3]
    src = torch.as_tensor(np.stack([c.source_mm for c in carms]), device=device)  # (V, 3)
    d = pts - src[:, None, :]
    length = torch.linalg.norm(d, dim=-1)
    return src, d / length[..., None], length


def _clip_to_box(s: torch.Tensor, d: torch.Tensor, shape: tuple[int, int, int], lo: float = -0.5):
    """Vectorised :func:`kernels_cpu._clip_to_box` on (R, 3) float64 voxel-space rays."""
    torch = import_torch()
    r = s.shape[0]
    tmin = torch.zeros(r, dtype=s.dtype, device=s.device)
    tmax = torch.full((r,), 1e30, dtype=s.dtype, device=s.device)
    miss = torch.zeros(r, dtype=torch.bool, device=s.device)
    for a in range(3):
        hi = shape[a] - 1.0 - lo
        sa, da = s[:, a], d[:, a]
        par = da.abs() < _EPS
        miss |= par & ((sa < lo) | (sa > hi))
        safe = torch.where(par, torch.ones_like(da), da)
        ta, tb = (lo - sa) / safe, (hi - sa) / safe
        t0, t1 = torch.minimum(ta, tb), torch.maximum(ta, tb)
        tmin = torch.where(par, tmin, torch.maximum(tmin, t0))
        tmax = torch.where(par, tmax, torch.minimum(tmax, t1))
    tmax = torch.where(miss, torch.zeros_like(tmax), tmax)
    tmin = torch.where(miss, torch.ones_like(tmin), tmin)
    return tmin, tmax


def _offset(q: torch.Tensor, first: torch.Tensor, g: torch.Tensor, count: torch.Tensor,
            span: torch.Tensor) -> torch.Tensor:
    """``t - tmin`` (mm) of sample ``q`` of each ray: 0 (entry), the planes ``first + (q - 1) g``,
    ``span`` (exit and beyond)."""
    torch = import_torch()
    plane = first + (q - 1.0) * g
    return torch.where(q <= 0, torch.zeros_like(plane), torch.where(q > count, span.expand_as(plane), plane))


class TorchMarcher:
    """Trilinear area-density marching of :class:`ProjectorVolume` objects with torch.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    dtype : torch.dtype, optional
        Per-sample precision (default float32; float64 reproduces the numba kernel to ~1e-12).
    samples_per_launch : int
        Rays x steps per ``grid_sample`` call (bounds the temporaries).
    """

    def __init__(self, device: str = "cuda", dtype: torch.dtype | None = None,
                 samples_per_launch: int = DEFAULT_SAMPLES_PER_LAUNCH) -> None:
        torch = import_torch()
        self.device = resolve_device(device)
        self.dtype = dtype or torch.float32
        if samples_per_launch < 1:
            raise InputError(f"samples_per_launch must be >= 1, got {samples_per_launch}")
        self.samples_per_launch = int(samples_per_launch)
        self._volumes: dict[str, tuple[tuple[np.ndarray, np.ndarray], torch.Tensor]] = {}

    # ------------------------------------------------------------------ upload
    def upload(self, vol: ProjectorVolume) -> torch.Tensor:
        """(1, L, K, J, I) per-label density channels of ``vol`` on the device, cached by name."""
        torch = import_torch()
        key = (vol.density_g_per_cc, vol.labels)  # the arrays themselves: an id is reused once freed
        hit = self._volumes.get(vol.name)
        if hit is not None and hit[0][0] is key[0] and hit[0][1] is key[1]:
            return hit[1]
        dens = torch.as_tensor(vol.density_g_per_cc).to(self.device)
        lab = torch.as_tensor(vol.labels).to(self.device)
        chans = torch.stack([torch.where(lab == m, dens, torch.zeros((), dtype=dens.dtype, device=self.device))
                             for m in range(len(vol.materials))])
        # (1, L, K, J, I): grid_sample's (x, y, z) are then the voxel indices (i, j, k), no flip per sample
        chans = chans.to(self.dtype).permute(0, 3, 2, 1)[None].contiguous()
        del dens, lab
        self._volumes[vol.name] = (key, chans)
        return chans

    def release(self, name: str | None = None) -> None:
        """Drop cached device volumes (one, or all)."""
        if name is None:
            self._volumes.clear()
        else:
            self._volumes.pop(name, None)

    # ------------------------------------------------------------------ march
    def march(self, vol: ProjectorVolume, lut: np.ndarray, n_materials: int, carms: Sequence[CArm],
              step_mm: float | None = None) -> torch.Tensor:
        """Area densities in g/cm^3 x mm (divide by 10 for g/cm^2), (V, H, W, n_materials) on the device.

        Parameters
        ----------
        vol : ProjectorVolume
        lut : int (L,)
            Local label -> output column.
        n_materials : int
            Output columns.
        carms : sequence of CArm
            Views sharing one detector size (one batch).
        step_mm : float or None
            Upper bound on the sample spacing along each ray (world mm); None: one sample per voxel
            plane of the ray's dominant axis.
        """
        torch = import_torch()
        import torch.nn.functional as F

        if step_mm is not None and not step_mm > 0:
            raise InputError(f"step_mm must be positive, got {step_mm}")
        if len(carms) == 0:
            raise InputError("march needs at least one view")
        chans = self.upload(vol)
        n_loc = chans.shape[1]
        shape = vol.shape
        f64, dt, dev = torch.float64, self.dtype, self.device
        src, dirs, ends = rays_on_device(carms, dev)  # (V, 3), (V, R, 3), (V, R)
        n_views, n_rays = dirs.shape[0], dirs.shape[1]
        a = torch.as_tensor(np.linalg.inv(vol.world_from_voxel)[:3, :], device=dev)  # vox_from_world (3, 4)
        s_vox = (src @ a[:, :3].T + a[:, 3])[:, None, :].expand(n_views, n_rays, 3).reshape(-1, 3)
        d_vox = (dirs @ a[:, :3].T).reshape(-1, 3)
        tmin, tmax = _clip_to_box(s_vox, d_vox, shape)
        tmax = torch.minimum(tmax, ends.reshape(-1))  # the ray ends on its detector pixel
        out = torch.zeros(n_views * n_rays, n_materials, dtype=f64, device=dev)
        hit = torch.nonzero(tmax > tmin).squeeze(1)
        if hit.numel() == 0:
            return out.reshape(n_views, carms[0].sensor_height, carms[0].sensor_width, n_materials)
        s_vox, d_vox, tmin, tmax = s_vox[hit], d_vox[hit], tmin[hit], tmax[hit]
        # the plane grid of kernels_cpu.plane_grid, per ray, in float64
        axis = torch.argmax(d_vox.abs(), dim=1)  # the first of equals, as the numba kernel
        sa = s_vox.gather(1, axis[:, None])[:, 0]
        da = d_vox.gather(1, axis[:, None])[:, 0]
        h = 1.0 / da.abs()
        m = (torch.ones_like(h) if step_mm is None
             else torch.clamp(torch.ceil(h / float(step_mm) * (1.0 - 1e-9)), min=1.0))
        ua, ub = m * (sa + tmin * da), m * (sa + tmax * da)
        up = da > 0
        c_first = torch.where(up, torch.floor(ua) + 1.0, torch.ceil(ua) - 1.0)
        count = torch.clamp(torch.where(up, torch.ceil(ub) - c_first, c_first - torch.floor(ub)), min=0.0)
        g = h / m
        t_first = (c_first / m - sa) / da
        n_samples = count + 2.0  # entry, planes, exit
        # grid_sample coordinates in [-1, 1] (align_corners=True) of the entry point and per mm along the
        # ray, in float64, so a sample's coordinate is one multiply-add: entry_g + offset * dir_g
        scale = torch.tensor([2.0 / (n - 1) if n > 1 else 0.0 for n in shape], dtype=f64, device=dev)
        entry_g = ((s_vox + tmin[:, None] * d_vox) * scale - 1.0).to(dt)
        dir_g = (d_vox * scale).to(dt)
        # per-ray constants for the per-sample pass (offsets from the entry)
        cnt, gg = count.to(dt), g.to(dt)
        first = (t_first - tmin).to(dt)
        span = (tmax - tmin).to(dt)
        cols = torch.as_tensor(np.asarray(lut, dtype=np.int64), device=dev)
        s_max = int(n_samples.max().item())
        order = torch.argsort(n_samples)  # similar lengths share a launch: less padding
        chunk_s = min(s_max, self.samples_per_launch)
        rows = max(1, self.samples_per_launch // chunk_s)
        for r0 in range(0, order.numel(), rows):
            idx = order[r0:r0 + rows]
            s_hi = int(n_samples[idx[-1]].item())
            acc = torch.zeros(idx.numel(), n_loc, dtype=f64, device=dev)
            ci, gi, fi, sp = cnt[idx, None], gg[idx, None], first[idx, None], span[idx, None]
            e_g, d_g = entry_g[idx, None, :], dir_g[idx, None, :]
            for q0 in range(0, s_hi, chunk_s):
                # offsets of samples q0 - 1 .. q1: the samples q0 .. q1 - 1 and their neighbours
                q = torch.arange(q0 - 1, min(q0 + chunk_s, s_hi) + 1, device=dev, dtype=dt)[None, :]
                off_ext = _offset(q, fi, gi, ci, sp)
                off = off_ext[:, 1:-1]
                # trapezoid weights; past the exit both neighbours sit at ``span``: weight 0
                wq = 0.5 * (off_ext[:, 2:] - off_ext[:, :-2])
                grid = torch.addcmul(e_g, off[..., None], d_g)  # (r, s, 3)
                vals = F.grid_sample(chans, grid[None, None], mode="bilinear", padding_mode="border",
                                     align_corners=True)  # (1, L, 1, r, s)
                acc += (vals[0, :, 0] * wq[None]).sum(-1).T.to(f64)
            out.index_add_(0, hit[idx], torch.zeros(idx.numel(), n_materials, dtype=f64, device=dev)
                           .index_add_(1, cols, acc))
        return out.reshape(n_views, carms[0].sensor_height, carms[0].sensor_width, n_materials)


@functools.cache
def shared_marcher(device: str) -> TorchMarcher:
    """The process's marcher for ``device``: every projector of a worker shares its uploaded volumes,
    so a CT (the same :class:`ProjectorVolume` arrays) goes to the device once per worker."""
    return TorchMarcher(device)
