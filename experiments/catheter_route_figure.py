"""The catheter's ways in through the builtin chest CT's labelled arteries, drawn over the labels.

    python experiments/catheter_route_figure.py [--out docs/img/catheter_ways_in.png]

Coronal and sagittal maximum projections of the label map's ``FEEDING_ARTERIES`` (each structure its own
colour) with the ways in of ``ddsa_sim/scene/catheter_route.py`` on top: to the coronary template's feeding
path (seed 2, placed on the heart label; the feeding path dotted, 40 mm down the ascending aorta to the root),
and to points 20 mm below the CT's top in the right and the left common carotid (an ICA injection's feeding
path starts at the CCA's origin). Prints each way's length and where it enters the CT.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/catheter_ways_in.png")
    args = parser.parse_args()

    from ddsa_sim.cli.dsa import scene_spec
    from ddsa_sim.scene import build_scene
    from ddsa_sim.scene.builder import _region, _structures, _way_in, load_patient
    from ddsa_sim.scene.catheter_route import FEEDING_ARTERIES
    from vessel_models.tree import VesselTree

    spec = scene_spec("builtin:chest-ct", "coronary", 2, labels="builtin:chest-ct-labels", catheter=False)
    patient = load_patient(spec.ct)
    affine = patient.ct.affine
    coronary = build_scene(spec, patient).vessels[0].tree
    ways = {"coronary (seed 2)": _way_in(patient, coronary)[0]}  # the way through the labels, to where it joins
    feeding = np.vstack([np.asarray(coronary.metadata["feeding_path_mm"]), coronary.positions_mm[:1]])
    for side in ("right", "left"):
        cca = np.argwhere(_region(patient, (f"common_carotid_artery_{side}",), "figure")[0])
        join = affine[:3, :3] @ cca[cca[:, 2] == cca[:, 2].max() - 8].mean(axis=0) + affine[:3, 3]
        tree = VesselTree(np.array([join + [0, 0, 20.0], join + [0, 0, 30.0]]), np.array([3.0, 2.5]),
                          np.array([-1, 0]), np.zeros(2, int), np.zeros(2, int), {"feeding_path_mm": [join.tolist()]})
        ways[f"{side} common carotid"] = _way_in(patient, tree)[0]

    structures = _structures(patient)
    masks = {n: patient.labels.data == structures[n] for n in FEEDING_ARTERIES if n in structures}
    masks = {n: m for n, m in masks.items() if m.any()}
    fig, axes = plt.subplots(1, 2, figsize=(12, 8.5), constrained_layout=True)
    colours = plt.cm.tab10(np.arange(len(masks)))
    for ax, (u, label) in zip(axes, ((0, "x (mm, patient left ->)"), (1, "y (mm, posterior ->)"))):
        for (name, mask), colour in zip(masks.items(), colours):
            voxels = np.argwhere(mask)
            pts = voxels @ affine[:3, :3].T + affine[:3, 3]
            ax.scatter(pts[::7, u], pts[::7, 2], s=1, color=colour, alpha=0.25, rasterized=True)
            ax.scatter([], [], s=30, color=colour, label=name)
        for (name, way), style, width in reversed(list(zip(ways.items(), ("k-", "m-", "c-"), (3.0, 2.0, 2.0)))):
            length = float(np.sum(np.linalg.norm(np.diff(way, axis=0), axis=1)))
            ax.plot(way[:, u], way[:, 2], style, lw=width, label=f"way in to the {name}: {length:.0f} mm")
        ax.plot(feeding[:, u], feeding[:, 2], "k:", lw=2, label="coronary feeding path (the template's)")
        ax.set_xlabel(label)
        ax.set_ylabel("z (mm, superior ->)")
        ax.set_aspect("equal")
        ax.set_title("coronal" if u == 0 else "sagittal")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle("Ways in through the builtin chest CT's labelled arteries (TotalSegmentator labels)")
    fig.savefig(args.out, dpi=90)
    for name, way in ways.items():
        print(f"{name}: {float(np.sum(np.linalg.norm(np.diff(way, axis=0), axis=1))):.0f} mm, enters at "
              f"{np.round(way[0], 1).tolist()} mm")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
