"""How well the coronary template registers to the half heart of an ``export_small.yaml`` region.

``place_coronary`` registers the template to the heart label of the CT it is given (fitted to its aorta label
where the region holds one) and ``lay_on_epicardium`` lays the placed arteries on that label, as the scene builder
does. The main job's heart regions hold half the heart each, so this script measures, for 5 tree seeds, the
distance of the tree's nodes to the surface of the full (uncropped) heart label of ``builtin:chest-ct``, registered
and then laid, the fraction of nodes inside the region, and the template scale, against the same placement on the
whole CT. It prints the Markdown table of docs/export.md ("Regions of a CT as patients"):

    python experiments/coronary_half_heart_fit.py
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ddsa_sim.scene.placement import lay_on_epicardium, place_coronary
from ddsa_sim.volumes.builtin import chest_ct_structures
from ddsa_sim.volumes.readers import read_ct_with_labels
from vessel_models.coronary import generate_coronary

#: (row name, voxel box of the region, injection side); the boxes of experiments/export_small.yaml.
CASES = [("whole CT", "", "left"), ("whole CT", "", "right"),
         ("`chest_z1L` (test)", "[298:512,43:454,49:96]", "left"),
         ("`chest_z1R` (train)", "[0:290,43:454,49:96]", "right"),
         ("`chest_z1L`", "[298:512,43:454,49:96]", "right"),
         ("`chest_z1R`", "[0:290,43:454,49:96]", "left")]
SEEDS = range(5)


def surface_distance_mm(heart: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Unsigned distance (mm) of every voxel to the surface of a boolean label."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return np.where(heart, ndimage.distance_transform_edt(heart, sampling=spacing),
                    ndimage.distance_transform_edt(~heart, sampling=spacing))


def voxel_index(points_mm: np.ndarray, affine: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(affine)
    return np.rint(points_mm @ inv[:3, :3].T + inv[:3, 3]).astype(int)


def main() -> None:
    structures = chest_ct_structures()
    heart_id, aorta_id = structures["heart"], structures["aorta"]
    ct, labels = read_ct_with_labels("builtin:chest-ct", "builtin:chest-ct-labels")
    heart = np.asarray(labels.data) == heart_id
    distance = surface_distance_mm(heart, ct.affine)
    print("| region | injection | node distance to the heart surface, median / p90 (mm): registered | laid on the "
          "epicardium | nodes in the region | scale |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, box, side in CASES:
        region, region_labels = read_ct_with_labels("builtin:chest-ct" + box, "builtin:chest-ct-labels" + box)
        half = np.asarray(region_labels.data) == heart_id
        aorta = np.asarray(region_labels.data) == aorta_id
        d, laid, inside, scales = [], [], [], []
        for seed in SEEDS:
            tree = generate_coronary(seed, side=side)
            m = place_coronary(tree.metadata, region, half, np.random.default_rng(seed), positions_mm=tree.positions_mm,
                               aorta=aorta if aorta.any() else None)
            placed = tree.transformed(m)
            for points, out in ((placed.positions_mm, d), (lay_on_epicardium(placed, half, region.affine).positions_mm,
                                                           laid)):
                ijk = voxel_index(points, ct.affine)
                ok = np.all((ijk >= 0) & (ijk < heart.shape), axis=1)
                out.append(np.where(ok, distance[tuple(np.clip(ijk, 0, np.array(heart.shape) - 1).T)], np.inf))
            rijk = voxel_index(placed.positions_mm, region.affine)
            inside.append(np.all((rijk >= 0) & (rijk < region.shape), axis=1).mean())
            scales.append(np.cbrt(abs(np.linalg.det(m[:3, :3]))))
        d, laid = np.concatenate(d), np.concatenate(laid)
        print(f"| {name} | {side} | {np.median(d):.1f} / {np.percentile(d, 90):.1f} | {np.median(laid):.1f} / "
              f"{np.percentile(laid, 90):.1f} | {100 * np.mean(inside):.0f} % | {min(scales):.2f}-{max(scales):.2f} |")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help, not a minute's run
    main()
