"""Readers, HU -> density, materials and virtual non-contrast against independent truth."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ddsa_sim import InputError
from ddsa_sim.volumes import (
    Volume,
    check_ct,
    ct_with_materials,
    hu_to_density,
    material_labels,
    read_ct,
    read_dicom_series,
    read_nifti,
    read_nrrd,
    read_volume,
    segment_by_threshold,
    virtual_non_contrast,
)


def test_hu_to_density_matches_deepdrr_formula():
    hu = np.array([-3000, -1000, -800, -100, 0, 40, 350, 1000, 3000], dtype=np.float32)
    expected = [max(0.0, min(0.001029 * h + 1.030, 0.0005886 * h + 1.03)) for h in hu.astype(float)]
    np.testing.assert_allclose(hu_to_density(hu), expected, rtol=1e-6, atol=1e-7)
    assert hu_to_density(np.float32(0)) == pytest.approx(1.03)


def test_threshold_segmentation_boundaries():
    hu = np.array([-1000, -800, -799.9, 0, 350, 350.1, 2000])
    m = segment_by_threshold(hu)
    assert m["air"].tolist() == [True, True, False, False, False, False, False]
    assert m["soft tissue"].tolist() == [False, False, True, True, True, False, False]
    assert m["bone"].tolist() == [False, False, False, False, False, True, True]
    labels, names = material_labels(m)
    assert names == ("air", "soft tissue", "bone")
    assert labels.tolist() == [0, 0, 1, 1, 1, 2, 2]


def test_material_labels_refuse_overlaps_and_gaps():
    a = np.array([True, True, False])
    with pytest.raises(InputError, match="material 'b' overlaps another material"):
        material_labels({"a": a, "b": np.array([False, True, True])})
    with pytest.raises(InputError, match="leave voxels without a material"):
        material_labels({"a": a, "b": np.array([False, False, False])})


def test_dicom_series_ct5n_sorted_and_affine():
    folder = get_testdata_file("CT5N")
    vol = read_dicom_series(folder)
    assert vol.shape == (16, 16, 5)
    files = sorted(__import__("pathlib").Path(folder).iterdir())
    dss = [pydicom.dcmread(f) for f in files]
    z = sorted(float(ds.ImagePositionPatient[2]) for ds in dss)
    # affine from IOP (identity axes), PixelSpacing and the sorted positions
    np.testing.assert_allclose(vol.spacing_mm, [0.488281, 0.488281, 2.5], rtol=1e-5)
    np.testing.assert_allclose(vol.voxel_to_world([0, 0, 0]), [-72.199997, -143.0, z[0]], atol=1e-4)
    np.testing.assert_allclose(vol.voxel_to_world([0, 0, 4]), [-72.199997, -143.0, z[-1]], atol=1e-4)
    # slice k holds the file at that position; voxel (i, j) = pixel_array[j, i] * slope + intercept
    for ds in dss:
        k = int(round((float(ds.ImagePositionPatient[2]) - z[0]) / 2.5))
        expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.data[:, :, k], expected.T)


def test_single_dicom_file_ct_small():
    vol = read_volume(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert vol.shape == (128, 128, 1)
    assert vol.data[5, 7, 0] == ds.pixel_array[7, 5] * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    # read as a volume, it is not a CT to project: a one-slice slab with the tree floating around it
    with pytest.raises(InputError, match=r"CT_small.dcm: one slice \(128x128x1 voxels\) is an image, not a CT"):
        read_ct(get_testdata_file("CT_small.dcm"))


def _copy_series(tmp_path, drop=None, shift=None, rotate=None):
    folder = tmp_path / "series"
    folder.mkdir()
    for n, f in enumerate(sorted(__import__("pathlib").Path(get_testdata_file("CT5N")).iterdir())):
        ds = pydicom.dcmread(f)
        pos = [float(x) for x in ds.ImagePositionPatient]
        if drop is not None and abs(pos[2] - drop) < 1e-3:
            continue
        if shift is not None and abs(pos[2] - shift) < 1e-3:
            pos[2] += 0.7
            ds.ImagePositionPatient = pos
        if rotate is not None and n == rotate:
            ds.ImageOrientationPatient = [0, 1, 0, 1, 0, 0]
        ds.save_as(folder / f"s{n}.dcm")
    return folder


@pytest.mark.parametrize("kind,match", [("drop", "missing slice"), ("shift", "uneven slice spacing"),
                                        ("rotate", "mixed orientation")])
def test_dicom_series_rejects_bad_series(tmp_path, kind, match):
    folder = _copy_series(tmp_path, **{"drop": 3.7625} if kind == "drop" else {"shift": 3.7625} if kind == "shift"
                          else {"rotate": 2})
    with pytest.raises(InputError, match=match):
        read_dicom_series(folder)


def _enhanced_ct(tmp_path, order=(3, 0, 4, 1, 2), slope=0.5):
    """CT5N's five slices as one enhanced multi-frame CT file, frames in ``order``: each frame's position in its
    own functional group, orientation and pixel spacing shared, stored values doubled with RescaleSlope 0.5 (the
    HU the same as the series'), the first frame's quadrupled with a slope of 0.25 in its own group."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    dss = [pydicom.dcmread(f) for f in sorted(__import__("pathlib").Path(get_testdata_file("CT5N")).iterdir())]
    own = {order[0]: slope / 2}  # one frame's own rescale overrides the shared one
    frames = [((dss[k].pixel_array.astype(np.float64) * float(dss[k].RescaleSlope)) / own.get(k, slope)).astype(np.int16)
              for k in order]
    out = copy.deepcopy(dss[0])
    for name in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "RescaleSlope",
                 "RescaleIntercept"):
        del out[name]
    out.NumberOfFrames = len(order)
    out.PixelData = np.stack(frames).tobytes()

    def item(**fields):
        ds = Dataset()
        for key, value in fields.items():
            setattr(ds, key, value)
        return ds

    shared = item(PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=dss[0].ImageOrientationPatient)]),
                  PixelMeasuresSequence=Sequence([item(PixelSpacing=dss[0].PixelSpacing, SliceThickness="2.5")]),
                  PixelValueTransformationSequence=Sequence([item(RescaleSlope=str(slope),
                                                                  RescaleIntercept=dss[0].RescaleIntercept)]))
    out.SharedFunctionalGroupsSequence = Sequence([shared])
    out.PerFrameFunctionalGroupsSequence = Sequence(
        [item(PlanePositionSequence=Sequence([item(ImagePositionPatient=dss[k].ImagePositionPatient)]),
              **({"PixelValueTransformationSequence": Sequence([item(RescaleSlope=str(own[k]),
                                                                     RescaleIntercept=dss[0].RescaleIntercept)])}
                 if k in own else {}))
         for k in order])
    path = tmp_path / "enhanced.dcm"
    out.save_as(path)
    return path


def test_enhanced_multiframe_ct_reads_as_its_series(tmp_path):
    series = read_dicom_series(get_testdata_file("CT5N"))
    enhanced = read_volume(_enhanced_ct(tmp_path))  # frames out of order, stored values at another slope
    np.testing.assert_allclose(enhanced.affine, series.affine, atol=1e-9)
    np.testing.assert_array_equal(enhanced.data, series.data)


def test_dicom_that_is_no_ct_series_is_one_line_naming_the_file(tmp_path):
    dose = get_testdata_file("rtdose.dcm")  # 15 frames of a dose grid: no plane position per frame
    with pytest.raises(InputError, match=r"rtdose.dcm: a multi-frame DICOM image \(15 frames, RT Dose Storage\)"):
        read_ct(dose)
    folder = _copy_series(tmp_path)
    ds = pydicom.dcmread(folder / "s2.dcm")
    ds.PixelSpacing = [0.6, 0.45]
    ds.save_as(folder / "s2.dcm")
    with pytest.raises(InputError, match=r"PixelSpacing differs between slices .* in .*s2.dcm"):
        read_dicom_series(folder)
    enhanced = _enhanced_ct(tmp_path)
    ds = pydicom.dcmread(enhanced)
    del ds.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence
    ds.save_as(enhanced)
    with pytest.raises(InputError, match=r"enhanced.dcm frame 3: DICOM field ImagePositionPatient is missing"):
        read_dicom_series(enhanced)


def test_nifti_ras_to_lps(tmp_path):
    import nibabel as nib

    data = np.zeros((4, 5, 6), np.float32)
    data[1, 2, 3] = 7
    ras = np.diag([2.0, 3.0, 4.0, 1.0])
    ras[:3, 3] = [10, 20, 30]
    nib.save(nib.Nifti1Image(data, ras), tmp_path / "v.nii.gz")
    vol = read_nifti(tmp_path / "v.nii.gz")
    # voxel (1, 2, 3) is at RAS (12, 26, 42) = LPS (-12, -26, 42)
    np.testing.assert_allclose(vol.voxel_to_world([1, 2, 3]), [-12, -26, 42])
    assert vol.data[1, 2, 3] == 7


def test_nrrd_header_written_by_hand_ras_to_lps(tmp_path):
    """A detached NRRD header as the format's specification defines it (teem.sourceforge.net/nrrd/format.html):
    ``space directions`` give one vector per axis, the first axis the fastest in the data file."""
    data = np.zeros((4, 5, 6), np.float32)
    data[1, 2, 3] = 7
    data.ravel(order="F").astype("<f4").tofile(tmp_path / "v.raw")
    (tmp_path / "v.nhdr").write_text(
        "NRRD0004\ntype: float\ndimension: 3\nsizes: 4 5 6\nspace: right-anterior-superior\n"
        "space directions: (2,0,0) (0,3,0) (0,0,4)\nspace origin: (10,20,30)\nkinds: domain domain domain\n"
        "endian: little\nencoding: raw\ndata file: v.raw\n")
    vol = read_volume(tmp_path / "v.nhdr")
    np.testing.assert_allclose(vol.voxel_to_world([1, 2, 3]), [-12, -26, 42])  # RAS (12, 26, 42)
    assert vol.data[1, 2, 3] == 7 and vol.data.sum() == 7


def test_nrrd_reads_as_the_same_ct_as_its_nifti(tmp_path):
    """An oblique LPS NRRD (3D Slicer's default space) and a NIfTI of the same grid are one CT."""
    import nibabel as nib
    import nrrd
    from scipy.spatial.transform import Rotation

    from ddsa_sim.volumes.readers import LPS_FROM_RAS

    hu = np.random.default_rng(0).uniform(-1000, 1500, (6, 7, 8)).astype(np.float32)
    lps = np.eye(4)
    lps[:3, :3] = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix() @ np.diag([0.7, 0.8, 2.5])
    lps[:3, 3] = [-100.0, 50.0, 300.0]
    nrrd.write(str(tmp_path / "ct.nrrd"), hu, {"space": "left-posterior-superior", "space directions": lps[:3, :3].T,
                                               "space origin": lps[:3, 3], "kinds": ["domain"] * 3})
    nib.save(nib.Nifti1Image(hu, LPS_FROM_RAS @ lps), tmp_path / "ct.nii.gz")
    from ddsa_sim.volumes.readers import peek_voxels

    assert peek_voxels(str(tmp_path / "ct.nrrd")) == 6 * 7 * 8  # the export's preflight, from the header alone
    a, b = read_ct(tmp_path / "ct.nrrd"), read_ct(tmp_path / "ct.nii.gz")
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    np.testing.assert_array_equal(a.data, b.data)
    nrrd.write(str(tmp_path / "xyz.nrrd"), hu, {"space": "scanner-xyz", "space directions": lps[:3, :3].T})
    with pytest.warns(UserWarning, match="xyz.nrrd: its space 'scanner-xyz' is not anatomical"):
        np.testing.assert_allclose(read_nrrd(tmp_path / "xyz.nrrd").affine[:3, :3], lps[:3, :3])
    (tmp_path / "bad.nrrd").write_text("NRRD0004\ntype: float\n")
    with pytest.raises(InputError, match=r"bad.nrrd: cannot read NRRD"):
        read_ct(tmp_path / "bad.nrrd")


def test_nifti_without_orientation_is_read_with_a_warning(tmp_path):
    import nibabel as nib

    img = nib.Nifti1Image(np.full((4, 5, 6), -1000.0, np.float32), np.diag([-2.0, 3.0, 4.0, 1.0]))
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    nib.save(img, tmp_path / "bare.nii.gz")
    with pytest.warns(UserWarning, match=r"bare.nii.gz: neither sform nor qform gives the orientation"):
        vol = read_nifti(tmp_path / "bare.nii.gz")
    np.testing.assert_allclose(vol.spacing_mm, [2.0, 3.0, 4.0])  # the voxel sizes kept, the flip unknown
    img.set_sform(np.diag([-2.0, 3.0, 4.0, 1.0]), code=1)
    nib.save(img, tmp_path / "scanner.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_nifti(tmp_path / "scanner.nii.gz")


def test_bad_inputs_are_clear(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_ct(tmp_path / "missing.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="junk.nii.gz"):
        read_ct(tmp_path / "junk.nii.gz")
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), np.eye(4)), tmp_path / "whole.nii")
    (tmp_path / "cut.nii").write_bytes((tmp_path / "whole.nii").read_bytes()[:9000])
    with pytest.raises(InputError) as err:  # nibabel's message has a second line, which used to eat our ")"
        read_ct(tmp_path / "cut.nii")
    assert str(err.value).startswith(f"{tmp_path / 'cut.nii'}: cannot read NIfTI (") and str(err.value).endswith(")")
    assert "\n" not in str(err.value)
    mri = Volume(np.random.default_rng(0).uniform(0, 800, (8, 8, 8)).astype(np.float32), np.eye(4), name="mri")
    with pytest.raises(InputError, match="does not look like a CT"):
        check_ct(mri)
    nan = Volume(np.full((4, 4, 4), -1000, np.float32), np.eye(4), name="nan")
    nan.data[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        check_ct(nan)
    for spacing in (0.0, np.nan):
        with pytest.raises(InputError, match="spacing|affine"):
            Volume(np.zeros((2, 2, 2)), np.diag([spacing, 1, 1, 1]))
    folder = _copy_series(tmp_path)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelSpacing = [-0.5, 0.5]
        ds.save_as(f)
    with pytest.raises(InputError, match="PixelSpacing must be positive"):
        read_dicom_series(folder)


def test_resample_keeps_extent_and_values():
    data = np.arange(4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4)
    vol = Volume(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    fine = vol.resampled(1.0)
    assert fine.shape == (8, 8, 8)
    np.testing.assert_allclose(fine.corners_mm().min(0), vol.corners_mm().min(0))
    np.testing.assert_allclose(fine.corners_mm().max(0), vol.corners_mm().max(0))
    # fine voxel 3 is centred at world 2.5 mm = old index 1.25; a linear field is interpolated exactly
    ijk_old = vol.world_to_voxel(fine.voxel_to_world([3, 2, 1]))
    assert fine.data[3, 2, 1] == pytest.approx(float(np.dot([16, 4, 1], ijk_old)), rel=1e-5)
    sub = vol.crop((1, 1, 1), (3, 3, 3))
    np.testing.assert_allclose(sub.voxel_to_world([0, 0, 0]), vol.voxel_to_world([1, 1, 1]))


def test_chest_ct_builtin_labels_and_vnc(chest_ct):
    from ddsa_sim.volumes.builtin import chest_ct_structures

    labels = read_volume("builtin:chest-ct-labels")
    classes = chest_ct_structures()
    assert classes["aorta"] == 52 and classes["common_carotid_artery_left"] == 58
    ct = ct_with_materials(chest_ct, labels, classes)
    assert set(ct.materials) >= {"air", "soft tissue", "bone", "lung", "blood"}
    total = sum(m.astype(np.int32) for m in ct.materials.values())
    assert np.all(total == 1)  # mutually exclusive and complete
    vessel = np.isin(np.rint(labels.data), [classes["aorta"], classes["common_carotid_artery_left"],
                                            classes["common_carotid_artery_right"]])
    enhanced = float(np.median(chest_ct.data[vessel]))
    assert enhanced > 150  # a contrast-enhanced CT: iodinated blood, well above unenhanced blood
    vnc, lumen = virtual_non_contrast(chest_ct, vessel)
    assert np.all(vnc.data[lumen] == 40.0)
    assert np.array_equal(vnc.data[~lumen], chest_ct.data[~lumen])
    assert lumen[vessel].all() and lumen.sum() < 1.5 * vessel.sum()


def test_dicom_series_reads_after_nibabel_was_imported_without_pydicom(tmp_path):
    """The NIfTI reader imports nibabel with pydicom hidden (speed); a DICOM series read afterwards in
    the same process still gets the real pydicom and the same voxels."""
    import subprocess
    import sys

    nifti = tmp_path / "ct.nii.gz"
    hu = np.full((4, 4, 3), -1000, np.int16)
    hu[1:3, 1:3] = 40
    __import__("nibabel").save(__import__("nibabel").Nifti1Image(hu, np.eye(4)), nifti)
    code = (f"import sys\nfrom ddsa_sim.volumes.readers import read_nifti, read_ct\nread_nifti({str(nifti)!r})\n"
            "assert 'pydicom' not in sys.modules\n"
            f"v = read_ct({get_testdata_file('CT5N')!r})\nprint(v.shape, float(v.data.sum()))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    direct = read_dicom_series(get_testdata_file("CT5N"))
    assert r.stdout.split() == [*str(direct.shape).split(), str(float(direct.data.sum()))]


def test_a_volume_without_voxels_along_an_axis_is_refused_in_one_line():
    """A slab of 0 voxels (``round(thickness / spacing) == 0``) had passed and failed deep in the material
    segmentation (``zero-size array to reduction operation maximum``)."""
    with pytest.raises(InputError, match=r"slab: volume has no voxels along an axis, shape \(24, 0, 24\)"):
        Volume(np.zeros((24, 0, 24), np.float32), np.eye(4), name="slab")
