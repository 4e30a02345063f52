"""Procedural heads (``builtin:head-phantom-<seed>``): slices, projections and morphometry against the literature.

    python experiments/head_phantom_gallery.py [--seeds 0 1 2 3] [--out docs/img/head_phantom.png]

One row per head: the mid-sagittal slice, the axial slice through the petrous ridges, the coronal slice
through the orbits (HU), and the -ln images of an AP and a lateral projection (``Projector``, 90 kVp,
threshold materials) centred on the volume, the view the Duan row-f training set aims near. Prints the
build time and, per head, measured from the voxels: skull breadth and length (outer bone surface on the
vault's axes), vault thickness, and the volumes of the air spaces a CT study would measure (each
maxillary sinus, the sphenoid and frontal sinuses: the air inside the region drawn for each, all its
compartments together), with the
published adult ranges beside them (docs/export.md, "A procedural head for training").
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from ddsa_sim.geometry import CArm  # noqa: E402
from ddsa_sim.projector import Projector, ProjectorVolume  # noqa: E402
from ddsa_sim.viz.figures import save_figure  # noqa: E402
from ddsa_sim.volumes import Volume, ct_with_materials  # noqa: E402
from ddsa_sim.volumes.distractors import Structure, occupancy  # noqa: E402
from ddsa_sim.volumes.head_phantom import MEAN_SKULL_MM, head_phantom, head_structures  # noqa: E402

DETECTOR = 256  # pixels per side over the full 298 mm panel
#: air spaces: name -> (mean-head point inside it, mm, scaled by the head's dimensions; published adult volume, ml)
AIR_SPACES = {"maxillary R": ((-28, -60, -24), "about 10-25 ml"), "maxillary L": ((28, -60, -24), "about 10-25 ml"),
              "sphenoid": ((0, -14, 0), "about 3-15 ml"), "frontal": ((-9, -76, 38), "0 (absent) to about 10 ml")}


def _neglog_views(ct: Volume, alphas_deg: tuple[float, ...]) -> list[np.ndarray]:
    """-ln images at the given C-arm angles (beta 0), isocentre at the volume centre; one projector for all."""
    carm = CArm(isocenter_mm=tuple(float(x) for x in ct.center_mm), sensor_height=DETECTOR, sensor_width=DETECTOR,
                pixel_mm=1536 * 0.194 / DETECTOR)
    proj = Projector([ProjectorVolume.from_ct(ct_with_materials(ct))], spectrum="90KV_AL40")
    return [proj.render(carm.at(alpha_deg=a, beta_deg=0.0)).neglog["image"] for a in alphas_deg]


def morphometry(ct: Volume, structures: list) -> dict[str, float]:
    """Skull breadth, length and vault thickness (mm) and air-space volumes (ml), measured on the voxels of
    the head ``ct`` drawn from ``structures`` (``head_structures``)."""
    vault = next(s for s in structures if s.kind == "shell")
    scale = 2 * vault.semi_axes_mm / MEAN_SKULL_MM  # the positions' scaling (head_phantom.MEAN_SKULL_MM)
    out = {}
    for axis, name in ((0, "breadth_mm"), (1, "length_mm")):
        direction = vault.rotation[:, axis]
        s = np.arange(-130.0, 130.0, 0.25)
        pts = vault.center_mm + s[:, None] * direction
        hu = ndimage.map_coordinates(ct.data, ct.world_to_voxel(pts).T, order=1, cval=-1000.0)
        bone = np.flatnonzero(hu > 700)
        out[name] = float(s[bone[-1]] - s[bone[0]])
        if axis == 0:  # thickness: the bone run at the left end of the breadth axis
            left = bone[bone > len(s) // 2]
            out["vault_thickness_mm"] = float(s[left[-1]] - s[left[0]])
    # a sinus: the air voxels inside the region drawn for it (the air structure nearest to its mean-head
    # point), so that the compartments of a septated sinus count together; 0 where the head has none near
    air = ct.data < -500
    spaces = [s for s in structures if s.kind in ("ellipsoid", "foam") and s.hu <= -800]
    for name, (point, _) in AIR_SPACES.items():
        p = np.array(point) * scale
        s = min(spaces, key=lambda s: np.linalg.norm(s.center_mm - p))
        if np.linalg.norm(s.center_mm - p) > 5.0:
            out[f"{name}_ml"] = 0.0
            continue
        box, w = occupancy(Structure("ellipsoid", s.center_mm, s.rotation, s.semi_axes_mm, 0.0), ct)
        out[f"{name}_ml"] = float(air[box][w > 0.5].sum() * np.prod(ct.spacing_mm) / 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--out", default="docs/img/head_phantom.png")
    args = parser.parse_args()
    fig, axes = plt.subplots(len(args.seeds), 5, figsize=(17, 3.6 * len(args.seeds)))
    axes = np.atleast_2d(axes)
    for r, seed in enumerate(args.seeds):
        t0 = time.perf_counter()
        ct = head_phantom(seed)
        built = time.perf_counter() - t0
        structures = head_structures(seed)
        m = morphometry(ct, structures)
        print(f"head {seed}: built in {built:.1f} s; " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()))
        vault = next(s for s in structures if s.kind == "shell")
        i0, j0, k0 = np.rint(ct.world_to_voxel(np.array([[0.0, -63.0, -6.0]]))[0]).astype(int)
        hu = ct.data
        panels = ((hu[hu.shape[0] // 2].T, "mid-sagittal", "lower"), (hu[:, :, k0].T, "axial, petrous level", "lower"),
                  (hu[:, j0].T, "coronal, orbits", "lower"))
        for c, (img, title, origin) in enumerate(panels):
            axes[r, c].imshow(img, cmap="gray", vmin=-1000, vmax=2000, origin=origin)
            axes[r, c].set_title(f"head {seed}: {title} (HU -1000..2000)", fontsize=8)
        for c, (image, title) in enumerate(zip(_neglog_views(ct, (0.0, 90.0)), ("AP", "lateral")), start=3):
            axes[r, c].imshow(image, cmap="gray")
            axes[r, c].set_title(f"head {seed}: {title} projection, -ln(I/I0), 90 kVp", fontsize=8)
        axes[r, 0].set_ylabel(f"breadth {2 * vault.semi_axes_mm[0]:.0f} mm, vault {vault.thickness_mm:.1f} mm", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Procedural heads (builtin:head-phantom-<seed>): training anatomy with skull base, air-cell "
                 "honeycombs, sinuses, teeth and cervical spine", fontsize=11)
    fig.tight_layout()
    save_figure(fig, args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
