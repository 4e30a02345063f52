"""Pseudo-patients of the builtin chest CT: slices and thickness maps of the source and of variants.

    python experiments/pseudo_patient_gallery.py [--out docs/img/pseudo_patients.png] [--count 3]

The variants are those an export config with the example ``variants:`` ranges plans
(``ddsa-sim export --example-config``), loaded through the exporter's own path
(plan -> ``ct_spec`` -> ``scene.load_patient``). Prints the time each variant took to build.
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
from ddsa_sim.scene import load_patient  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/pseudo_patients.png")
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args()
    data = yaml.safe_load(example_config_yaml())
    data["cts"] = [{**data["cts"][0], "variants": {**data["cts"][0]["variants"], "count": args.count}}]
    data["count"] = args.count
    specs = {s.ct_id: s for s in plan_dataset(config_from_dict(data, where="example config"))}
    source = load_patient(ct_spec(replace(next(iter(specs.values())), ct_variant=None)))
    rows = [("source", source, None)]
    for ct_id, spec in specs.items():
        t0 = time.perf_counter()
        patient = load_patient(ct_spec(spec))
        print(f"{ct_id}: built in {time.perf_counter() - t0:.1f} s; {spec.ct_variant}")
        rows.append((ct_id, patient, spec.ct_variant))
    fig, axes = plt.subplots(len(rows), 3, figsize=(12, 3.6 * len(rows)))
    for r, (name, patient, v) in enumerate(rows):
        hu = patient.ct.data
        k = hu.shape[2] // 2
        j = hu.shape[1] // 2
        sp = patient.ct.spacing_mm
        # water-equivalent path along y (AP) in cm: a crude DRR that shows the habitus
        wet_cm = np.clip(hu + 1000.0, 0, None).sum(axis=1) / 1000.0 * sp[1] / 10
        panels = ((hu[:, :, k].T, f"axial k={k}", (-1000, 1000), sp[0] / sp[1]),
                  (hu[:, j, :].T, f"coronal j={j}", (-1000, 1000), sp[2] / sp[0]),
                  (wet_cm.T, "water-equivalent AP path (cm)", (0, 40), sp[2] / sp[0]))
        for c, (img, title, (lo, hi), aspect) in enumerate(panels):
            ax = axes[r, c]
            im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, origin="lower" if c else "upper")
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.axis("off")
            if c == 2:
                fig.colorbar(im, ax=ax, fraction=0.04)
        if v is not None:
            axes[r, 0].text(2, 30, "scale " + " ".join(f"{x:.2f}" for x in v["scale"])
                            + f"\nrot {' '.join(f'{x:.1f}' for x in v['rotate_deg'])} deg"
                            + f"\ndeform {v['deform_mm']:.1f} mm, HU x{v['hu_scale']:.3f} {v['hu_offset']:+.0f}"
                            + (f"\nFOV {v['fov_mm']:.0f} mm" if v["fov_mm"] else ""),
                            color="yellow", fontsize=7, va="top")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    from PIL import Image

    Image.open(args.out).convert("L").save(args.out, optimize=True)  # grey pictures: a third of the bytes
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
