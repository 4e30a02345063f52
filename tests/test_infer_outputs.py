"""``ddsa-sim infer`` of PNG / TIFF images: the output's format, float intensities, the preview PNGs.

Truth: the network's DSA of ``-ln(I / I0)`` computed here with numpy (not through the reader), file formats by
their magic bytes, and the checkpoint's ``target_max`` (0.6, ``tests/xa_helpers.py``) for the PNG scale.
"""

import numpy as np
import pytest
import tifffile
import torch
import typer
from PIL import Image
from typer.testing import CliRunner
from xa_helpers import tiny_checkpoint

from ddsa_sim.cli.train import register
from ddsa_sim.training.checkpoint import load_model
from ddsa_sim.training.infer import Frames, predict, read_frames, to_log_domain

PNG_MAGIC, TIFF_MAGIC = b"\x89PNG\r\n\x1a\n", b"II*\x00"
SCALE = 0.6  # tiny_checkpoint's target_max


@pytest.fixture(scope="module")
def app_ckpt(tmp_path_factory):
    app = typer.Typer()
    register(app)
    return app, tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture
def network_runs(monkeypatch):
    """The inputs the network ran on, by frame count: a refusal must come before any."""
    import ddsa_sim.training.infer as infer

    runs: list[int] = []

    def counting(model, norm, frames_log, *args, **kwargs):
        runs.append(frames_log.shape[0])
        return predict(model, norm, frames_log, *args, **kwargs)

    monkeypatch.setattr(infer, "predict", counting)
    return runs


def _infer(app, ckpt, src, out, *extra):
    return CliRunner().invoke(app, ["infer", str(ckpt), str(src), "-o", str(out), "--native-grid", *extra])


def _refused(r, *needles):
    line = r.stderr.strip()
    assert r.exit_code == 2 and line.startswith("error: ") and len(line.splitlines()) == 1, r.output
    assert all(n in line for n in needles), line


def _network_dsa(ckpt, log: np.ndarray) -> np.ndarray:
    model, norm, _, _ = load_model(ckpt, torch.device("cpu"))
    return predict(model, norm, log.astype(np.float32), torch.device("cpu"))


def test_output_format_follows_the_out_extension_not_the_input(app_ckpt, tmp_path, network_runs):
    """A TIFF input written to x.png is a 16-bit PNG with its scale, a PNG input written to x.tif a float32 TIFF;
    an extension infer cannot write, or a sequence into one PNG, is refused before the network runs."""
    app, ckpt = app_ckpt
    intensity = (np.random.default_rng(1).uniform(0.02, 0.9, (40, 44)) * 65535).astype(np.uint16)
    dsa = _network_dsa(ckpt, -np.log(np.maximum(intensity, 1) / 65535.0)[None])[0]
    tifffile.imwrite(tmp_path / "in16.tif", intensity)
    Image.fromarray(intensity).save(tmp_path / "in16.png")

    r = _infer(app, ckpt, tmp_path / "in16.tif", tmp_path / "x.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "x.png").read_bytes()[:8] == PNG_MAGIC
    png = Image.open(tmp_path / "x.png")
    assert png.mode.startswith("I") and float(png.text["ddsa_scale"]) == pytest.approx(SCALE)
    values = np.asarray(png, dtype=np.float64) / 65535 * float(png.text["ddsa_scale"])
    assert np.abs(values - np.clip(dsa, 0, SCALE)).max() <= SCALE / 65535 / 2 + 1e-6

    r = _infer(app, ckpt, tmp_path / "in16.png", tmp_path / "out.tif")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out.tif").read_bytes()[:4] == TIFF_MAGIC
    tif = tifffile.imread(tmp_path / "out.tif")
    assert tif.dtype == np.float32 and np.allclose(tif, dsa, atol=1e-6)  # the DSA itself, not a PNG's encoding
    assert network_runs == [1, 1]

    r = _infer(app, ckpt, tmp_path / "in16.png", tmp_path / "y.jpg")
    _refused(r, "-o ", "y.jpg", ".png", ".tif", ".tiff")
    tifffile.imwrite(tmp_path / "seq.tif", np.stack([intensity] * 3), photometric="minisblack")
    r = _infer(app, ckpt, tmp_path / "seq.tif", tmp_path / "seq.png")
    _refused(r, "-o ", "seq.png", "one frame", "3")
    assert network_runs == [1, 1]  # both refused before the network ran
    assert not any((tmp_path / n).exists() for n in ("y.jpg", "y_preview.png", "seq.png", "seq_preview.png"))


def test_float_intensities_are_the_same_line_integrals_as_the_log_frame(app_ckpt, tmp_path):
    """exp(-c) as a float TIFF with --input-domain intensity --i0 1 is the frame c given as -ln (it was floored
    at one count, I0 = 1, so all 0); without --i0 its maximum is I0, with a warning."""
    app, ckpt = app_ckpt
    c = np.random.default_rng(2).uniform(0.0, 5.18, (40, 44)).astype(np.float32)
    c[0, 0], c[0, 1] = 0.0, 5.18
    tifffile.imwrite(tmp_path / "intensity.tif", np.exp(-c.astype(np.float64)).astype(np.float32))
    tifffile.imwrite(tmp_path / "log.tif", c)

    log = to_log_domain(read_frames(tmp_path / "intensity.tif"), "intensity", 1.0)
    np.testing.assert_allclose(log[0], c, rtol=0, atol=1e-6)  # float32 rounding of exp(-c), 6e-8 relative
    with pytest.warns(UserWarning, match=r"intensity\.tif: floating-point intensities without --i0: I0 = the "
                      r"image's maximum, 1"):
        np.testing.assert_allclose(to_log_domain(read_frames(tmp_path / "intensity.tif"), "intensity",
                                                 name="intensity.tif")[0], c, atol=1e-6)
    zero = to_log_domain(Frames(np.array([[[0.0, 2.0]]], np.float32), "tiff", None, True), "intensity", 2.0)
    assert np.isfinite(zero).all() and zero[0, 0, 0] == pytest.approx(-np.log(1e-6))  # floored at I0 * 1e-6

    for src, out, extra in (("intensity.tif", "a.tif", ["--input-domain", "intensity", "--i0", "1"]),
                            ("log.tif", "b.tif", [])):  # a float TIFF is -ln unless told
        r = _infer(app, ckpt, tmp_path / src, tmp_path / out, *extra)
        assert r.exit_code == 0, r.output
    a, b = tifffile.imread(tmp_path / "a.tif"), tifffile.imread(tmp_path / "b.tif")
    assert np.abs(b).max() > 0.01 and np.allclose(a, b, atol=1e-4)


def test_an_existing_preview_is_kept_unless_overwrite(app_ckpt, tmp_path, network_runs):
    """The preview PNGs beside an output are outputs too: refused before any work without --overwrite (the old
    file kept), replaced with it, never when one is the input or another input's output."""
    app, ckpt = app_ckpt
    intensity = np.full((3, 24, 24), 30000, np.uint16)
    tifffile.imwrite(tmp_path / "seq.tif", intensity, photometric="minisblack")
    Image.fromarray(intensity[0]).save(tmp_path / "f.png")
    old = b"an older preview"
    (tmp_path / "o_preview.png").write_bytes(old)

    r = _infer(app, ckpt, tmp_path / "f.png", tmp_path / "o.png")
    _refused(r, "o_preview.png", "exists", "--overwrite")
    assert (tmp_path / "o_preview.png").read_bytes() == old and not (tmp_path / "o.png").exists()
    assert network_runs == []
    r = _infer(app, ckpt, tmp_path / "f.png", tmp_path / "o.png", "--overwrite")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o_preview.png").read_bytes()[:8] == PNG_MAGIC
    assert Image.open(tmp_path / "o_preview.png").size == (24, 24)

    # a sequence's previews are one per frame; a file of another output's naming (another length) is not one
    for name in ("s_preview_001.png", "s_preview.png", "s_preview_003.png"):
        (tmp_path / name).write_bytes(old)
    _refused(_infer(app, ckpt, tmp_path / "seq.tif", tmp_path / "s.tif"), "s_preview_001.png", "--overwrite")
    assert (tmp_path / "s_preview_001.png").read_bytes() == old and not (tmp_path / "s.tif").exists()
    r = _infer(app, ckpt, tmp_path / "seq.tif", tmp_path / "s.tif", "--overwrite")
    assert r.exit_code == 0, r.output
    assert all((tmp_path / f"s_preview_{k:03d}.png").read_bytes()[:8] == PNG_MAGIC for k in range(3))
    assert (tmp_path / "s_preview.png").read_bytes() == (tmp_path / "s_preview_003.png").read_bytes() == old

    # a preview that would replace the input, or another input's DSA, is refused even with --overwrite
    Image.fromarray(intensity[0]).save(tmp_path / "x_preview.png")
    before = (tmp_path / "x_preview.png").read_bytes()
    _refused(_infer(app, ckpt, tmp_path / "x_preview.png", tmp_path / "x.png", "--overwrite"), "is the input")
    assert (tmp_path / "x_preview.png").read_bytes() == before
    for names, needles in ((("a.png", "a_preview.png"), ("DSA of a_preview.png", "preview of the DSA of a.png")),
                           (("b.png", "b.tif"), ("b_preview.png", "DSA of b.png", "DSA of b.tif"))):
        folder = tmp_path / names[1]
        folder.mkdir()
        for name in names:
            Image.fromarray(intensity[0]).save(folder / name, format="PNG" if name.endswith(".png") else "TIFF")
        _refused(_infer(app, ckpt, folder, tmp_path / "folder_out", "--overwrite"), *needles)
    assert network_runs == [1, 3] and not (tmp_path / "folder_out").exists()


def test_integer_intensities_without_a_white_level_need_i0(app_ckpt, tmp_path, network_runs):
    """A 32-bit or signed integer image has no detector white level (its type's top, 2**31 - 1, shifted -ln by about
    10); negative intensities are no intensities. With --i0 a 32-bit image reads as its 16-bit twin."""
    app, ckpt = app_ckpt
    counts = np.random.default_rng(0).integers(200, 4000, (24, 24))
    tifffile.imwrite(tmp_path / "i32.tif", counts.astype(np.int32))
    tifffile.imwrite(tmp_path / "s16.tif", (counts - 1000).astype(np.int16))
    _refused(_infer(app, ckpt, tmp_path / "i32.tif", tmp_path / "a.tif"), "int32 pixels have no white level", "--i0")
    _refused(_infer(app, ckpt, tmp_path / "s16.tif", tmp_path / "b.tif", "--i0", "4095"),
             "of the intensities are negative", "--input-domain log")
    assert network_runs == []
    wide = to_log_domain(read_frames(tmp_path / "i32.tif"), i0=4095.0)
    np.testing.assert_allclose(wide[0], -np.log(counts / 4095.0), rtol=1e-6)
    dark = counts.astype(np.int16)
    dark[0, :3] = -2  # an offset-corrected frame's few dark pixels: floored at one count, with a word
    tifffile.imwrite(tmp_path / "dark.tif", dark)
    with pytest.warns(UserWarning, match="of the intensities are negative"):
        floored = to_log_domain(read_frames(tmp_path / "dark.tif"), i0=4095.0)
    assert np.all(floored[0, 0, :3] == np.float32(np.log(4095.0)))


def test_xa_run_options_on_a_picture_say_they_are_ignored(app_ckpt, tmp_path):
    """QA found: `--mask-frame 3` and `--frame-time-ms 50` on a PNG input were ignored without a word."""
    from ddsa_sim.training.infer import infer_path

    _, ckpt = app_ckpt
    Image.fromarray(np.full((24, 24), 120, np.uint8)).save(tmp_path / "f.png")
    with pytest.warns(UserWarning, match=r"f\.png: --mask-frame, --frame-time-ms apply to an XA run \(DICOM\); a PNG / "
                                         r"TIFF input ignores them"):
        infer_path(ckpt, tmp_path / "f.png", tmp_path / "dsa.png", mask_frame=3, frame_time_ms=50.0, progress=False,
                   native_grid=True)
    assert (tmp_path / "dsa.png").is_file()
