"""XA runs in and out: DICOM reading (multi-frame, enhanced, folders; 8-16 bit; MONOCHROME1/2),
conventional DSA against the phantom's iodine, pixel shift, the ``infer`` round trip and animations.

Truth is the analytic phantom of ``tests/xa_helpers.py``: ``-ln(I_k / I_0) = V_k``. Tolerances are
the quantisation of the stored values (``0.5 / I`` in -ln units per image) plus half a DICOM rescale step.
"""

import json
import re
import warnings

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import pydicom
import pytest
import torch
import typer
from PIL import Image
from pydicom.uid import JPEGLossless, generate_uid
from scipy import ndimage
from typer.testing import CliRunner
from xa_helpers import STUDY, phantom, tiny_checkpoint, write_frames, write_multiframe

from ddsa_sim.angio.conventional import conventional_dsa, mask_shift
from ddsa_sim.angio.media import to_display
from ddsa_sim.angio.xa import read_run
from ddsa_sim.cli.train import register
from ddsa_sim.training.checkpoint import load_model
from ddsa_sim.training.infer import Frames, predict, to_log_domain


def _quantisation_bound(intensity: np.ndarray) -> float:
    """Largest -ln error of a frame-minus-mask from rounding the stored values (0.5 each)."""
    return 0.5 / intensity.min() + 0.5 / intensity[0].min()


def _rescaled(ds) -> np.ndarray:
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


@pytest.fixture(scope="module")
def app_ckpt(tmp_path_factory):
    app = typer.Typer()
    register(app)
    return app, tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_multiframe_read_gives_intensities_and_frame_times(tmp_path, bits, photometric):
    ph = phantom(bits)
    write_multiframe(tmp_path / "run.dcm", ph, photometric)
    run = read_run(tmp_path / "run.dcm")
    assert run.bits_stored == bits and run.max_value == 2**bits - 1
    np.testing.assert_array_equal(run.pixels, ph.intensity)  # MONOCHROME1 inverted back
    np.testing.assert_allclose(run.frame_times_ms, ph.times_ms)
    assert run.header.PatientID == STUDY["PatientID"] and "PixelData" not in run.header


def test_enhanced_xa_frame_times_from_functional_groups(tmp_path):
    ph = phantom(12)
    write_multiframe(tmp_path / "enh.dcm", ph, enhanced=True)
    run = read_run(tmp_path / "enh.dcm")
    np.testing.assert_array_equal(run.pixels, ph.intensity)
    np.testing.assert_allclose(run.frame_times_ms, ph.times_ms, atol=1e-3)


@pytest.mark.parametrize("instance_numbers", [True, False])
def test_folder_of_frames_is_ordered_by_frame_number_or_time(tmp_path, instance_numbers):
    ph = phantom(10)
    paths = write_frames(tmp_path / "series", ph, instance_numbers)
    run = read_run(tmp_path / "series")
    np.testing.assert_array_equal(run.pixels, ph.intensity)  # file names are in reverse order
    np.testing.assert_allclose(run.frame_times_ms, ph.times_ms, atol=1e-3)
    assert run.sources == tuple(paths) and len(run.source_refs) == 6


def test_conventional_dsa_is_the_iodine_of_the_phantom():
    ph = phantom(12)
    log = -np.log(ph.intensity / (2**12 - 1))
    dsa, shifts = conventional_dsa(log)
    assert np.abs(dsa - ph.iodine).max() <= _quantisation_bound(ph.intensity)
    assert not shifts.any()
    last, _ = conventional_dsa(log, mask_frame=-1)  # the last frame as mask: iodine relative to it
    assert np.abs(last - (ph.iodine - ph.iodine[-1])).max() <= 2 * _quantisation_bound(ph.intensity)


@pytest.mark.parametrize("shift", [(3, -2), (-5, 2)])
def test_pixel_shift_finds_the_motion_and_removes_the_anatomy(shift):
    ph = phantom(16, shift=shift)
    log = -np.log(ph.intensity / (2**16 - 1))
    plain, _ = conventional_dsa(log)
    fixed, shifts = conventional_dsa(log, pixel_shift=True)
    np.testing.assert_allclose(shifts[1:], np.tile(shift, (5, 1)), atol=1e-3)  # content moved by +shift
    inner = (slice(1, None), slice(6, -6), slice(6, -6))  # the mask's repeated edge rows are not data
    err_fixed = np.abs(fixed - ph.iodine)[inner].max()
    assert err_fixed <= _quantisation_bound(ph.intensity)
    assert np.abs(plain - ph.iodine)[inner].max() > 50 * err_fixed  # misregistered anatomy


@pytest.mark.parametrize("shift", [(0.3, -0.6), (-1.7, 0.4)])
def test_pixel_shift_is_sub_pixel_despite_the_iodine(shift):
    ph = phantom(16)
    log = -np.log(ph.intensity / (2**16 - 1))
    mask = log[0]
    frame = ndimage.shift(mask, shift, order=3, mode="nearest") + ph.iodine[3]
    np.testing.assert_allclose(mask_shift(mask, frame), shift, atol=1e-3)


def test_pixel_shift_takes_no_repeating_patterns_match_for_motion():
    """QA found: on anatomy repeating every 82 px of a 128 px image, a frame that did not move was shifted by 82 px
    (and numpy's "Mean of empty slice" warnings reached the user): the whole-pixel search took the next period."""
    rows, cols = np.mgrid[0:128, 0:128].astype(np.float64)
    mask = 3.0 + np.sin(cols / 13.0) * np.cos(rows / 17.0)  # a period of 2 pi 13 = 81.7 px along the rows
    frame = mask.copy()
    frame[60:64, 20:110] += 0.5  # a vessel
    for moved in ((0, 0), (3, -2)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no numpy warning
            with pytest.warns(UserWarning, match="more than a quarter of the image"):
                shift = mask_shift(mask, ndimage.shift(frame, moved, order=3, mode="nearest"))
        np.testing.assert_allclose(shift, moved, atol=1e-3)  # as the sub-pixel test, the vessel ignored


def test_infer_xa_round_trip_dicom_png_gif_mp4(app_ckpt, tmp_path):
    app, ckpt = app_ckpt
    ph = phantom(12)
    src = write_multiframe(tmp_path / "run.dcm", ph, "MONOCHROME1")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(tmp_path / "run.dcm"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    info = json.loads((out / "run.json").read_text())
    assert info["frames"] == 6 and info["mask_frame"] == 0 and info["frame_times_from"] == "dicom"
    assert info["i0"] == 2**12 - 1  # the white level used (12 bits stored), not the absent --i0
    low, high = info["window"]

    # network: the DICOM holds what predict() gives on the same -ln frames
    model, norm, _, _ = load_model(ckpt)
    log = to_log_domain(Frames(ph.intensity, "dicom", 2**12 - 1.0, False))
    expected = {"network": predict(model, norm, log, torch.device("cpu")), "conventional": ph.iodine}
    tolerance = {"network": 0.0, "conventional": _quantisation_bound(ph.intensity)}
    series = set()
    for method in ("network", "conventional"):
        ds = pydicom.dcmread(out / method / "dsa.dcm")
        values = _rescaled(ds)
        assert values.shape == (6, 48, 57)
        assert np.abs(values - expected[method]).max() <= tolerance[method] + float(ds.RescaleSlope) / 2 + 1e-7
        # derived secondary capture: identifiers kept, new UIDs, derivation, source reference, frame times
        assert ds.SOPClassUID == pydicom.uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage
        for key in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "AccessionNumber"):
            assert str(ds[key].value) == STUDY[key]
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID and ds.SOPInstanceUID != src.SOPInstanceUID
        series.add(ds.SeriesInstanceUID)
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.DerivationDescription
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        np.testing.assert_allclose(read_run(out / method / "dsa.dcm").frame_times_ms, ph.times_ms)

        # pictures: PNG frames = the windowed DSA; GIF = the PNGs with the frame intervals; MP4 ~ PNGs
        pngs = np.stack([np.asarray(Image.open(out / method / f"frame_{k:03d}.png")) for k in range(6)])
        assert pngs.dtype == np.uint8 and pngs.shape == (6, 48, 57)
        assert np.abs(pngs.astype(int) - to_display(values, (low, high))).max() <= 1
        gif = iio.imread(out / method / "dsa.gif", index=None)
        np.testing.assert_array_equal(gif[..., 0] if gif.ndim == 4 else gif, pngs)
        durations = [iio.immeta(out / method / "dsa.gif", index=k)["duration"] for k in range(6)]
        assert durations == [100, 100, 120, 100, 100, 100]
        reader = iio2.get_reader(out / method / "dsa.mp4", format="FFMPEG")
        assert reader.get_meta_data()["fps"] == pytest.approx(10.0)
        movie = np.stack([frame[..., 0] for frame in reader])
        reader.close()
        assert movie.shape == (6, 48, 58)  # odd width padded by one repeated column for H.264
        assert np.abs(movie[:, :, :57].astype(float) - pngs).mean() < 1.5
    assert len(series) == 2
    # --tta: the DICOM holds the symmetry-averaged network (48 x 57 frames: the 4 flips)
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(tmp_path / "run.dcm"), "-o", str(tmp_path / "tta"), "--tta"])
    assert r.exit_code == 0, r.output
    ds = pydicom.dcmread(tmp_path / "tta" / "network" / "dsa.dcm")
    assert json.loads((tmp_path / "tta" / "run.json").read_text())["tta"] is True and info["tta"] is False
    tta = predict(model, norm, log, torch.device("cpu"), tta=True)
    assert np.abs(tta - expected["network"]).max() > 10 * float(ds.RescaleSlope)
    assert np.abs(_rescaled(ds) - tta).max() <= float(ds.RescaleSlope) / 2 + 1e-7
    # iodine is dark: the vessel's peak frame is darker on the vessel than off it
    conv = np.asarray(Image.open(out / "conventional" / "frame_003.png")).astype(float)
    assert conv[ph.iodine[3] > 0.3].mean() < conv[ph.iodine[3] < 0.01].mean() - 100


def test_infer_folder_run_with_mask_and_frame_time_options(app_ckpt, tmp_path):
    app, ckpt = app_ckpt
    ph = phantom(10)
    write_frames(tmp_path / "series", ph)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(tmp_path / "series"), "-o", str(out),
                                 "--mask-frame", "1", "--frame-time-ms", "50"])
    assert r.exit_code == 0, r.output
    info = json.loads((out / "run.json").read_text())
    assert info["mask_frame"] == 1 and info["frame_times_ms"] == [0, 50, 100, 150, 200, 250]
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(tmp_path / "series"), "-o", str(tmp_path / "o9"),
                                 "--mask-frame", "9"])  # refused before the network runs, naming the flag
    assert r.exit_code == 2 and "--mask-frame: 9 is outside the run's 6 frames" in r.stderr, r.output
    assert not (tmp_path / "o9").exists()
    values = _rescaled(pydicom.dcmread(out / "conventional" / "dsa.dcm"))
    bound = _quantisation_bound(ph.intensity) + 0.5 / ph.intensity[1].min()
    assert np.abs(values - (ph.iodine - ph.iodine[1])).max() <= bound + float(
        pydicom.dcmread(out / "conventional" / "dsa.dcm").RescaleSlope)


def _bad_cases(tmp_path):
    """(path given to infer, file the error must name) for each unsupported input."""
    ph = phantom(12)
    cases = {}
    colour = write_multiframe(tmp_path / "colour.dcm", ph)
    colour.SamplesPerPixel, colour.PhotometricInterpretation, colour.PlanarConfiguration = 3, "RGB", 0
    colour.BitsAllocated, colour.BitsStored, colour.HighBit = 8, 8, 7
    colour.PixelData = np.zeros((6, 48, 57, 3), np.uint8).tobytes()
    colour.save_as(tmp_path / "colour.dcm", enforce_file_format=True)
    cases["colour"] = (tmp_path / "colour.dcm", "colour.dcm")
    nopix = write_multiframe(tmp_path / "nopix.dcm", ph)
    del nopix.PixelData
    nopix.save_as(tmp_path / "nopix.dcm", enforce_file_format=True)
    cases["no pixel data"] = (tmp_path / "nopix.dcm", "nopix.dcm")
    jpeg = write_multiframe(tmp_path / "jpeg.dcm", ph)
    jpeg.file_meta.TransferSyntaxUID = JPEGLossless
    jpeg.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xd9"] * 6)
    jpeg["PixelData"].VR = "OB"
    jpeg.save_as(tmp_path / "jpeg.dcm", enforce_file_format=True)
    cases["decoder"] = (tmp_path / "jpeg.dcm", "jpeg.dcm")
    mixed = tmp_path / "mixed"
    write_frames(mixed, ph)
    small = pydicom.dcmread(mixed / "IM0002")
    small.Rows, small.Columns = 40, 40
    small.PixelData = np.zeros((40, 40), np.uint16).tobytes()
    small.save_as(mixed / "IM0002", enforce_file_format=True)
    cases["differs"] = (mixed, "IM0002")
    other = tmp_path / "two_series"
    write_frames(other, ph)
    stranger = pydicom.dcmread(other / "IM0003")
    stranger.SeriesInstanceUID = generate_uid()
    stranger.save_as(other / "IM0003", enforce_file_format=True)
    cases["another series"] = (other, "IM0003")
    return cases


def test_bad_dicom_is_one_line_naming_the_file(app_ckpt, tmp_path):
    app, ckpt = app_ckpt
    for needle, (path, culprit) in _bad_cases(tmp_path).items():
        if needle == "decoder" and pydicom.pixels.get_decoder(JPEGLossless).is_available:
            continue  # a JPEG Lossless decoder is installed here: the file is then merely broken
        r = CliRunner().invoke(app, ["infer", str(ckpt), str(path), "-o", str(tmp_path / "o")])
        assert r.exit_code == 2, (needle, r.output)
        line = r.stderr.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in r.output
        assert culprit in line and needle in line, line
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_infer_never_overwrites_its_input_and_asks_before_replacing_an_output(app_ckpt, tmp_path):
    """docs/reliability.md: no command replaces an existing output unless asked, and an output that is its own
    input is refused even then (the contrast frame would be lost)."""
    app, ckpt = app_ckpt
    frame = tmp_path / "f.tif"
    iio.imwrite(frame, np.full((16, 16), 0.5, np.float32))
    before = frame.read_bytes()
    for extra in ([], ["--overwrite"]):
        r = CliRunner().invoke(app, ["infer", str(ckpt), str(frame), "-o", str(frame), "--native-grid", *extra])
        assert r.exit_code == 2 and "is the input" in r.stderr, r.output
    assert frame.read_bytes() == before
    out = tmp_path / "dsa.tif"
    out.write_bytes(b"an older result")
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(frame), "-o", str(out), "--native-grid"])
    assert r.exit_code == 2 and "--overwrite" in r.stderr and out.read_bytes() == b"an older result", r.output
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(frame), "-o", str(out), "--native-grid", "--overwrite"])
    assert r.exit_code == 0 and iio.imread(out).shape == (16, 16), r.output


def test_frames_must_be_finite_grey_levels(tmp_path):
    """A grey image saved as RGB(A) is its grey level; real colour, complex pixels and NaN are refused in one
    line naming the file (they were converted to luminance, shown as a traceback, or inferred with a warning)."""
    from ddsa_sim import InputError
    from ddsa_sim.training.infer import read_frames

    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(tmp_path / "grey_rgb.png")
    np.testing.assert_array_equal(read_frames(tmp_path / "grey_rgb.png").data[0], grey)
    colour = np.repeat(grey[..., None], 3, axis=2)
    colour[0, 0, 1] += 1
    Image.fromarray(colour).save(tmp_path / "colour.png")
    iio.imwrite(tmp_path / "complex.tif", np.zeros((8, 8), np.complex64))
    iio.imwrite(tmp_path / "nan.tif", np.full((8, 8), np.nan, np.float32))
    for name, needle in (("colour.png", "colour PNG"), ("complex.tif", "complex64"), ("nan.tif", "NaN")):
        with pytest.raises(InputError, match=needle) as err:
            read_frames(tmp_path / name)
        assert name in str(err.value) and len(str(err.value).splitlines()) == 1


def test_infer_overwrite_never_deletes_the_checkpoint_and_bad_numbers_are_refused_before_any_write(app_ckpt,
                                                                                                  tmp_path):
    """QA found: `-o RUN_FOLDER --overwrite` deleted the checkpoint in it and the training run around it; `--i0 nan`
    wrote NaN DICOMs and an invalid run.json; `--frame-time-ms nan` / inf / 1e6 stopped in the GIF writer with a
    traceback and a half-written folder; `--mask-frame 99` on a one-frame run was ignored; `-o dsa.tif` for a run
    made a folder of that name. Each is one line now, before the folder is touched."""
    app, ckpt = app_ckpt
    run = tmp_path / "runs"
    run.mkdir()
    (run / "best.pt").write_bytes(ckpt.read_bytes())
    (run / "train.log").write_text("log")
    dcm = tmp_path / "LAO30.dcm"
    write_multiframe(dcm, phantom())
    r = CliRunner().invoke(app, ["infer", str(run / "best.pt"), str(dcm), "-o", str(run), "--overwrite"])
    assert r.exit_code == 2 and "would delete the input" in r.stderr and "best.pt" in r.stderr, r.output
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "train.log"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "older.txt").write_text("an older result")
    single = tmp_path / "single.dcm"
    ph = phantom()
    ph.intensity, ph.times_ms = ph.intensity[:1], ph.times_ms[:1]
    write_multiframe(single, ph)
    for args, needle in ((["--i0", "nan"], "--i0 must be a finite"), (["--i0", "inf"], "--i0 must be a finite"),
                         (["--frame-time-ms", "nan"], "--frame-time-ms must be a finite"),
                         (["--frame-time-ms", "inf"], "--frame-time-ms must be a finite"),
                         (["--frame-time-ms", "1000000"], "--frame-time-ms must be a finite"),
                         (["--frame-time-ms", "0"], "--frame-time-ms must be a finite")):
        r = CliRunner().invoke(app, ["infer", str(ckpt), str(dcm), "-o", str(out), "--overwrite", *args])
        assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.output)
        assert (out / "older.txt").read_text() == "an older result"
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(single), "-o", str(out), "--overwrite", "--mask-frame", "9"])
    assert r.exit_code == 2 and "--mask-frame: 9 is outside the run's 1 frames" in r.stderr, r.output
    # QA found: the folder had been emptied before the run was read and its mask frame checked
    assert (out / "older.txt").read_text() == "an older result"
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(dcm.read_bytes()[: dcm.stat().st_size // 2])  # its pixel data cut short
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(broken), "-o", str(out), "--overwrite"])
    assert r.exit_code == 2 and "broken.dcm" in r.stderr, r.output
    assert (out / "older.txt").read_text() == "an older result"
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(dcm), "-o", str(tmp_path / "dsa.tif")])
    assert r.exit_code == 2 and "output is a folder" in r.stderr and not (tmp_path / "dsa.tif").exists(), r.output


@pytest.mark.parametrize("vector, frame_time", [
    ([0.0] * 6, None),                                 # a Frame Time Vector of zeros
    (None, -50.0),                                     # a negative Frame Time
    ([0.0, 100.0, -20.0, 100.0, 100.0, 100.0], None),  # a frame before its predecessor
])
def test_frame_times_that_do_not_rise_give_way_to_the_next_source(tmp_path, vector, frame_time):
    """QA found: a Frame Time Vector of zeros divided by zero in the MP4 writer (a traceback and a half-written
    folder), a negative Frame Time gave a 0-byte MP4 and exit 0. A source whose times do not rise is passed over
    (docs/inference.md); with none left a run is refused unless --frame-time-ms."""
    from ddsa_sim import InputError
    from ddsa_sim.training.infer import _run_times

    path = tmp_path / "r.dcm"
    write_multiframe(path, phantom())
    ds = pydicom.dcmread(path)
    del ds.FrameTimeVector
    if vector is not None:
        ds.FrameTimeVector = vector
    else:
        del ds.FrameIncrementPointer
    if frame_time is not None:
        ds.FrameTime = frame_time
    ds.save_as(path)
    np.testing.assert_allclose(read_run(path).frame_times_ms, np.arange(6) * 100.0)  # CineRate 10 / s
    del ds.CineRate
    ds.save_as(path)
    run = read_run(path)
    assert run.frame_times_ms is None
    with pytest.raises(InputError, match="no frame times"):
        _run_times(run, None)


def test_frame_times_passed_over_are_named_and_required_pixel_tags_missing_are_named(tmp_path):
    """QA found: a run whose Frame Time Vector had 3 values for 6 frames, or whose Frame Time was negative, was
    refused as having "no frame times"; a missing PhotometricInterpretation was called a colour image and a missing
    BitsStored "BitsStored 0"."""
    from ddsa_sim import InputError
    from ddsa_sim.training.infer import _run_times

    path = tmp_path / "r.dcm"
    ds = write_multiframe(path, phantom())
    ds.FrameTimeVector = [0.0, 50.0, 50.0]
    ds.FrameTime = -66.7
    del ds.CineRate
    ds.save_as(path)
    with pytest.raises(InputError, match=r"r\.dcm: no frame times \(.*; passed over: Frame Time Vector \(3 values for "
                                         r"6 frames\); Frame Time -66\.7 ms: do not rise\); give --frame-time-ms"):
        _run_times(read_run(path), None)
    for tag, needle in (("PhotometricInterpretation", "no PhotometricInterpretation (MONOCHROME1 or MONOCHROME2)"),
                        ("BitsStored", "no BitsStored")):
        bare = write_multiframe(tmp_path / f"no_{tag}.dcm", phantom())
        delattr(bare, tag)
        bare.save_as(tmp_path / f"no_{tag}.dcm")
        with pytest.raises(InputError, match=re.escape(f"no_{tag}.dcm: {needle}")):
            read_run(tmp_path / f"no_{tag}.dcm")


def test_derived_dicom_of_an_anonymised_single_frame_is_valid(app_ckpt, tmp_path):
    """QA found, with dciodvfy: a one-frame run's outputs carried Frame Increment Pointer (type 1C, only for more than
    one frame), and a source without Study Instance UID gave an output without one (type 1). Both outputs of a run
    share one generated study; type 2 identifiers are present, empty."""
    app, ckpt = app_ckpt
    ph = phantom()
    ph.intensity, ph.times_ms = ph.intensity[:1], ph.times_ms[:1]
    path = tmp_path / "one.dcm"
    ds = write_multiframe(path, ph)
    for tag in ("StudyInstanceUID", "Modality", "SeriesNumber", "PatientName", "StudyDate"):
        delattr(ds, tag)
    ds.save_as(path)
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(path), "-o", str(tmp_path / "o"), "--native-grid"])
    assert r.exit_code == 0, r.output
    out = pydicom.dcmread(tmp_path / "o" / "network" / "dsa.dcm")
    assert "FrameIncrementPointer" not in out and "FrameTimeVector" not in out and int(out.NumberOfFrames) == 1
    assert out.StudyInstanceUID and out.Modality == "OT" and out.PatientName == "" and out.StudyDate == ""
    again = tmp_path / "o2"
    CliRunner().invoke(app, ["infer", str(ckpt), str(path), "-o", str(again), "--native-grid"])
    assert pydicom.dcmread(again / "network" / "dsa.dcm").StudyInstanceUID == out.StudyInstanceUID  # one study
    import shutil
    import subprocess

    if shutil.which("dciodvfy"):  # dicom3tools, an independent validator
        report = subprocess.run(["dciodvfy", str(tmp_path / "o" / "network" / "dsa.dcm")], capture_output=True,
                                text=True)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors
