"""Bone texture on a procedural head: slices and a lateral projection without and with it.

    python experiments/bone_texture_gallery.py [--head 0] [--amplitude 0.2 0.4] [--sigma-mm 1.0]
        [--out docs/img/bone_texture.png]

Pseudo-patients of ``builtin:head-phantom-<head>`` (no deformation, no scaling), loaded through the exporter's
own path (``CTSpec`` -> ``scene.load_patient``) with ``texture_amplitude`` 0 and each ``--amplitude``.
Rows: one per amplitude; columns: an axial slice through the skull base (HU), a coronal slice, and the
-ln image of a lateral projection (``head_phantom_gallery``'s, 90 kVp) over the skull base, the view Circle of
Willis runs are taken in; the last row is the projected texture alone (textured minus plain, -ln).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from head_phantom_gallery import _neglog_views  # noqa: E402  experiments/head_phantom_gallery.py, beside this script

from ddsa_sim.scene import CTSpec, load_patient  # noqa: E402
from ddsa_sim.viz.figures import save_figure  # noqa: E402
from ddsa_sim.volumes.augment import PseudoPatient  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head", type=int, default=0)
    parser.add_argument("--amplitude", type=float, nargs="+", default=[0.2, 0.4])
    parser.add_argument("--sigma-mm", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("docs/img/bone_texture.png"))
    args = parser.parse_args()
    source = f"builtin:head-phantom-{args.head}"
    rows = []
    for a in [0.0, *args.amplitude]:
        ct = load_patient(CTSpec(source, variant=PseudoPatient(seed=1, texture_amplitude=a,
                                                               texture_sigma_mm=args.sigma_mm))).ct
        rows.append((a, ct, _neglog_views(ct, (90.0,))[0]))
    plain = rows[0][2]
    k = rows[0][1].shape[2] // 2 - 10  # about 10 mm below the origin: the skull base
    j = rows[0][1].shape[1] // 2
    fig, axes = plt.subplots(len(rows) + 1, 3, figsize=(12, 4 * (len(rows) + 1)))
    lo, hi = np.percentile(plain, [1, 99.5])
    for r, (a, ct, img) in enumerate(rows):
        title = "plain" if a == 0 else f"a = {a}, sigma = {args.sigma_mm} mm"
        for c, (data, what, vmin, vmax) in enumerate(((ct.data[:, :, k].T, "axial, HU", -200, 2000),
                                                     (ct.data[:, j, :].T, "coronal, HU", -200, 2000),
                                                     (img, "lateral projection, -ln", lo, hi))):
            ax = axes[r, c]
            im = ax.imshow(data, cmap="gray", vmin=vmin, vmax=vmax, origin="lower" if c < 2 else "upper")
            ax.set_title(f"{title}: {what}", fontsize=9)
            ax.set_axis_off()
            fig.colorbar(im, ax=ax, fraction=0.046)
        if a > 0:
            print(f"a = {a}: projected texture std {np.std(img - plain):.4f} -ln (plain image 1-99.5 % {lo:.2f}-{hi:.2f})")
    diff = rows[-1][2] - plain
    span = float(np.percentile(np.abs(diff), 99.5))
    for c in range(2):
        axes[-1, c].set_axis_off()
    im = axes[-1, 2].imshow(diff, cmap="coolwarm", vmin=-span, vmax=span)
    axes[-1, 2].set_title(f"a = {rows[-1][0]} minus plain, -ln", fontsize=9)
    axes[-1, 2].set_axis_off()
    fig.colorbar(im, ax=axes[-1, 2], fraction=0.046)
    fig.suptitle(f"{source}: bone texture (variants.bone_texture)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
