"""Pseudo-patients in the exporter: virtual non-contrast, the scene renderer, one load per variant."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import yaml
from test_export_scene import write_config

from ddsa_sim import InputError
from ddsa_sim.export.config import load_config
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.sample import CTCache, render_sample
from ddsa_sim.scene import CTSpec, load_patient
from ddsa_sim.volumes.augment import PseudoPatient
from ddsa_sim.volumes.materials import BLOOD_HU

SHAPE = (24, 24, 20)


def write_labelled_ct(folder, aorta_hu: float):
    """Water block in air with an 'aorta' (label 7) of ``aorta_hu`` and a 'vertebra' (label 3) of bone."""
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[2:22, 2:22, :] = 0.0
    labels = np.zeros(SHAPE, np.uint8)
    labels[10:14, 10:14, :] = 7
    hu[labels == 7] = aorta_hu
    labels[4:7, 4:7, :] = 3
    hu[labels == 3] = 900.0
    affine = np.diag([3.0, 3.0, 4.0, 1.0])
    nib.save(nib.Nifti1Image(hu, affine), str(folder / "ct.nii.gz"))
    nib.save(nib.Nifti1Image(labels, affine), str(folder / "seg.nii.gz"))
    (folder / "structures.csv").write_text("structure,id\naorta,7\nvertebrae_L1,3\n")
    return [str(folder / n) for n in ("ct.nii.gz", "seg.nii.gz", "structures.csv")]


@pytest.mark.parametrize("aorta_hu, vnc, cleared", [
    (300.0, "auto", True),      # enhanced aorta named by the label map: cleared by default
    (45.0, "auto", False),      # a non-contrast CT is left as it is
    (300.0, "off", False),
    (300.0, ("aorta",), True),  # named explicitly
])
def test_virtual_non_contrast_of_a_pseudo_patient(tmp_path, aorta_hu, vnc, cleared):
    ct, seg, csv = write_labelled_ct(tmp_path, aorta_hu)
    patient = load_patient(CTSpec(ct, seg, csv, variant=PseudoPatient(), vnc=vnc))
    aorta = patient.labels.data == 7
    expected = BLOOD_HU if cleared else aorta_hu
    np.testing.assert_allclose(patient.ct.data[aorta], expected, atol=1e-3)
    np.testing.assert_allclose(patient.ct.data[patient.labels.data == 3], 900.0, atol=1e-3)  # bone untouched
    plain = load_patient(CTSpec(ct, seg, csv))  # no variant: the CT as it is, whatever vnc says
    np.testing.assert_allclose(plain.ct.data[aorta], aorta_hu, atol=1e-3)


def test_unknown_vnc_structure_names_the_field(tmp_path):
    ct, seg, csv = write_labelled_ct(tmp_path, 300.0)
    with pytest.raises(InputError, match="cts.variants.vnc: unknown structure 'aorta_x'"):
        load_patient(CTSpec(ct, seg, csv, variant=PseudoPatient(), vnc=("aorta_x",), vnc_field="cts.variants.vnc"))


def test_a_bare_off_is_off_as_the_docs_write_it(tmp_path):
    """YAML 1.1 reads `vnc: off` as false; the example config and docs/export.md write it so."""
    cfg = variant_config(tmp_path / "c", {"count": 1, "vnc": False})
    assert cfg.cts[0].variants.vnc == "off"
    from ddsa_sim.training.config import parse_config

    assert parse_config(yaml.safe_load("data: {verify: off}")).data.verify == "off"


def variant_config(folder, variants):
    folder.mkdir()
    path = write_config(folder, noise=False, count=2)
    data = yaml.safe_load(path.read_text())
    if variants is not None:
        data["cts"][0]["variants"] = variants
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_identity_variant_renders_the_source_and_a_scaled_one_differs(tmp_path):
    rendered = {}
    for name, variants in (("source", None), ("identity", {"count": 1, "vnc": "off"}),
                           ("scaled", {"count": 2, "scale": {"min": 1.1, "max": 1.2}, "deform_mm": 2.0,
                                       "smooth_mm": 40.0})):
        specs = plan_dataset(variant_config(tmp_path / name, variants))
        cache = CTCache(1)
        rendered[name] = (specs, [render_sample(s, cache) for s in specs], cache)
    _, ref, _ = rendered["source"]
    specs, arrays, _ = rendered["identity"]
    assert [s.ct_id for s in specs] == ["phantom~p0", "phantom~p0"]
    for a, b in zip(arrays, ref):
        np.testing.assert_allclose(a["mask"], b["mask"], rtol=1e-5, atol=1e-5)
    specs, arrays, cache = rendered["scaled"]
    assert [s.ct_id for s in specs] == ["phantom~p0", "phantom~p1"] and cache.loads == 2
    # the same poses (same seed) through a wider and longer patient attenuate more
    assert all(a["mask"].sum() > 1.05 * b["mask"].sum() for a, b in zip(arrays, ref))


def test_views_aimed_at_label_structures(tmp_path):
    """``pose.aim``: the isocenter is a voxel of the named structures (plus the jitter), never the CT centre."""
    ct, seg, csv = write_labelled_ct(tmp_path, 45.0)
    folder = tmp_path / "aim"
    folder.mkdir()
    path = write_config(folder, noise=False, count=3)
    data = yaml.safe_load(path.read_text())
    data["cts"] = [{"path": ct, "labels": seg, "structures": csv}]
    data["pose"] = {**data["pose"], "aim": ["vertebrae_*"], "isocenter_jitter_mm": 2.0}
    path.write_text(yaml.safe_dump(data))
    specs = plan_dataset(load_config(path))
    assert all(s.aim == ("vertebrae_*",) and 0 <= s.aim_u < 1 for s in specs)
    cache = CTCache(1)
    for s in specs:
        iso = render_sample(s, cache)["isocenter_mm"] - np.asarray(s.isocenter_offset_mm)
        patient = cache.get(s)
        ijk = np.rint(patient.ct.world_to_voxel(iso)).astype(int)
        assert patient.labels.data[tuple(ijk)] == 3  # a vertebra voxel (the CT centre is water)
    data["pose"]["aim"] = ["femur_*"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"pose.aim: no structure of .* matches \['femur_\*'\]"):
        render_sample(plan_dataset(load_config(path))[0], CTCache(1))
    data["cts"] = [{"path": ct}]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="has no labels, needed by pose.aim"):
        plan_dataset(load_config(path))


def test_a_bad_vnc_structure_names_its_ct_entry(tmp_path):
    """The error of the second CT source's ``variants.vnc`` names ``cts.1`` (it named ``cts.variants.vnc``, which of
    several CT sources left unsaid), written as every config error writes a list entry."""
    ct, seg, csv = write_labelled_ct(tmp_path, 300.0)
    folder = tmp_path / "two"
    folder.mkdir()
    path = write_config(folder, noise=False, count=2)
    data = yaml.safe_load(path.read_text())
    data["cts"].append({"path": ct, "labels": seg, "structures": csv, "variants": {"count": 1, "vnc": ["aortaa"]}})
    path.write_text(yaml.safe_dump(data))
    spec = plan_dataset(load_config(path))[1]
    assert spec.ct_id == "ct~p0"
    with pytest.raises(InputError, match=r"^cts\.1\.variants\.vnc: unknown structure 'aortaa'"):
        render_sample(spec, CTCache(1))
