"""Animations: GIF / MP4 of frames through one display window; ``--gif`` / ``--mp4`` on sweep and dsa."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from scene_helpers import run_cli

from ddsa_sim import InputError
from ddsa_sim.viz.animation import save_animation
from ddsa_sim.viz.figures import display_window, to_uint8

FRAMES = [np.full((31, 40), float(k), np.float32) for k in range(5)]
#: grey levels of 0..4 through the window (0, 4): 255 k / 4, rounded half to even
LEVELS = [0, 64, 128, 191, 255]


def test_gif_frames_share_one_window_and_loop(tmp_path):
    path = save_animation(FRAMES, tmp_path / "a.gif", fps=4, window=(0.0, 4.0))
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.info["duration"] == 250 and im.info["loop"] == 0
    grey = iio.imread(path, index=None)[..., 0]
    assert grey.shape == (5, 31, 40) and list(grey[:, 3, 7]) == LEVELS
    inverted = iio.imread(save_animation(FRAMES, tmp_path / "b.gif", window=(0.0, 4.0), invert=True), index=None)
    assert list(inverted[:, 0, 0, 0]) == [255 - v for v in LEVELS]


def test_mp4_has_every_frame(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    path = save_animation(FRAMES, tmp_path / "a.mp4", fps=4, window=(0.0, 4.0))
    video = iio.imread(path, index=None, plugin="FFMPEG")
    assert video.shape[:3] == (5, 32, 40)  # odd height padded to even for H.264
    assert np.all(np.abs(video[:, 10, 10, 0].astype(int) - LEVELS) <= 3)  # lossy codec, flat frames


def test_bad_animation_requests(tmp_path):
    with pytest.raises(InputError, match=".gif or .mp4"):
        save_animation(FRAMES, tmp_path / "a.avi")
    with pytest.raises(InputError, match="one shape"):
        save_animation([FRAMES[0], np.zeros((3, 3))], tmp_path / "a.gif")
    assert not list(tmp_path.iterdir())  # nothing half-written




def test_sweep_gif_and_dsa_bolus_gif(ct_path, tmp_path, capsys):
    assert run_cli(["sweep", str(ct_path), "-o", str(tmp_path / "s"), "--alpha", "-20:20:20", "--detector", "24x24",
                 "--pixel-mm", "8", "--gif"]) == 0, capsys.readouterr().err
    sweep = iio.imread(tmp_path / "s" / "sweep.gif", index=None)
    views = [np.load(tmp_path / "s" / f"view_{k:03d}.npz")["neglog"] for k in range(3)]
    assert sweep.shape[:3] == (3, 24, 24)
    window = display_window(views)  # one window over the sweep; frames in pose order
    for frame, view in zip(sweep, views):
        assert np.abs(frame[..., 0].astype(int) - to_uint8(view, window)).max() <= 1
    assert run_cli(["dsa", "--ct", str(ct_path), "--vessels", "lsystem", "--seed", "2", "--frames", "3", "--no-noise",
                 "--no-scatter",
                 "--detector", "48x48", "--pixel-mm", "4", "--spacing-mm", "0.6", "-o", str(tmp_path / "d"),
                 "--gif"]) == 0, capsys.readouterr().err
    bolus = iio.imread(tmp_path / "d" / "view_000.gif", index=None)[..., 0]
    assert bolus.shape == (3, 48, 48)
    dark = (bolus < 128).sum(axis=(1, 2))  # vessels shown dark: more of them as the bolus fills
    assert dark[0] <= dark[1] <= dark[2] and dark[2] > dark[0]
