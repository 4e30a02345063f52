"""Anatomical distractors on a chest slab: slices and an AP projection without and with them.

    python experiments/prepare_chest_slabs.py            # once: out/chest_slabs (git-ignored)
    python experiments/distractor_gallery.py [--slab out/chest_slabs/chest_z0R.nii.gz]
        [--out docs/img/distractors.png] [--seed 3] [--bone-cortex-mm 0.5 4]

One pseudo-patient (virtual non-contrast, no deformation) of the slab, planned by an export config with
``variants: {count: 1, distractors: {...}}`` and loaded through the exporter's own path
(plan -> ``ct_spec`` -> ``scene.load_patient``); the same variant without its ``distractors`` is the
reference. Rows: without, with, and their difference; columns: the axial and coronal slices that the
distractors change most, and the -ln image of an AP projection (``Projector``, 90 kVp) with the
threshold materials. Prints the drawn structures and the time the distractors took. ``--bone-cortex-mm``
gives the bones a cortex (800-1900 HU) around a cancellous core (100-400 HU), as Duan's row l has them
(``docs/img/distractors_cortex.png``: ``--bone-cortex-mm 0.5 4 --out docs/img/distractors_cortex.png``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from ddsa_sim.export.config import config_from_dict, example_config_yaml  # noqa: E402
from ddsa_sim.export.plan import plan_dataset  # noqa: E402
from ddsa_sim.export.sample import ct_spec  # noqa: E402
from ddsa_sim.geometry import CArm  # noqa: E402
from ddsa_sim.projector import Projector, ProjectorVolume  # noqa: E402
from ddsa_sim.scene import load_patient  # noqa: E402
from ddsa_sim.viz.figures import save_figure  # noqa: E402
from ddsa_sim.volumes import Volume, ct_with_materials  # noqa: E402
from ddsa_sim.volumes.distractors import draw_structures  # noqa: E402

DETECTOR = 256  # pixels per side over the full 298 mm panel


def _ap_neglog(ct: Volume) -> np.ndarray:
    carm = CArm(isocenter_mm=tuple(float(x) for x in ct.center_mm), sensor_height=DETECTOR, sensor_width=DETECTOR,
                pixel_mm=1536 * 0.194 / DETECTOR)
    proj = Projector([ProjectorVolume.from_ct(ct_with_materials(ct))], spectrum="90KV_AL40")
    return proj.render(carm.at(alpha_deg=0.0, beta_deg=0.0)).neglog["image"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slab", type=Path, default=Path("out/chest_slabs/chest_z0R.nii.gz"))
    parser.add_argument("--out", default="docs/img/distractors.png")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--bone-cortex-mm", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="cortical bones of this thickness range (default: solid bones)")
    args = parser.parse_args()
    distractors = {"shells": 2, "bones": 3, "cavities": 2}
    if args.bone_cortex_mm:
        distractors.update(bone_hu={"min": 800, "max": 1900},  # the cortex's HU; the core's: the default
                           bone_cortex_mm=dict(zip(("min", "max"), args.bone_cortex_mm, strict=True)))
    data = yaml.safe_load(example_config_yaml())
    labels = args.slab.parent / "labels" / args.slab.name
    data["cts"] = [{"path": str(args.slab.resolve()), "labels": str(labels.resolve()),
                    "structures": "builtin:chest-ct-structures",
                    "variants": {"count": 1, "vnc": "auto", "distractors": distractors}}]
    data.update(count=1, seed=args.seed)
    spec = plan_dataset(config_from_dict(data, where="distractor gallery config"))[0]
    plain = {k: v for k, v in spec.ct_variant.items() if k != "distractors"}
    t0 = time.perf_counter()
    without = load_patient(ct_spec(replace(spec, ct_variant=plain)))
    t1 = time.perf_counter()
    with_ = load_patient(ct_spec(spec))
    t2 = time.perf_counter()
    print(f"variant {t1 - t0:.1f} s, with distractors {t2 - t1:.1f} s; {spec.ct_variant['distractors']}")
    for s in draw_structures(without.ct, ct_spec(spec).distractors):
        print(f"  {s.kind}: centre {np.round(s.center_mm, 1)} mm, semi-axes {np.round(s.semi_axes_mm, 1)} mm, "
              f"HU {s.hu:.0f}, thickness {s.thickness_mm:.1f} mm, open {s.clip is not None}")
    a, b = without.ct.data, with_.ct.data
    changed = np.abs(b - a) > 100
    k = int(np.argmax(changed.sum(axis=(0, 1))))
    j = int(np.argmax(changed.sum(axis=(0, 2))))
    sp = without.ct.spacing_mm
    images = [_ap_neglog(without.ct), _ap_neglog(with_.ct)]
    diff = images[1] - images[0]
    span = float(np.abs(diff).max())
    rows = [("without", a, images[0], (-1000, 1500), (None, None)),
            ("with distractors", b, images[1], (-1000, 1500), (None, None)),
            ("difference", b - a, diff, (-1500, 1500), (-span, span))]
    fig, axes = plt.subplots(3, 3, figsize=(13, 11))
    for r, (name, hu, img, (lo, hi), (img_lo, img_hi)) in enumerate(rows):
        panels = ((hu[:, :, k].T, f"axial k={k}, HU", lo, hi, sp[1] / sp[0]),
                  (hu[:, j, :].T, f"coronal j={j}, HU", lo, hi, sp[2] / sp[0]),
                  (img, "AP projection, -ln(I/I0)", img_lo, img_hi, 1.0))
        for c, (im_data, title, vmin, vmax, aspect) in enumerate(panels):
            ax = axes[r, c]
            im = ax.imshow(im_data, cmap="coolwarm" if r == 2 else "gray", vmin=vmin, vmax=vmax, aspect=aspect,
                           origin="lower" if c == 1 else "upper")
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046)
    bones = "cortical bones" if args.bone_cortex_mm else "bones"
    fig.suptitle(f"{args.slab.name}: pseudo-patient with procedural bone shells, {bones} and air cavities", fontsize=11)
    fig.tight_layout()
    save_figure(fig, args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
