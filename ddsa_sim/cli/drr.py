"""Render and save plain DRR views of a CT (the ``project`` and ``sweep`` commands).

Imported by those commands when they run (it imports the projector); not by ``ddsa_sim.cli`` itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ddsa_sim.files import all_or_nothing, atomic_output, clear_output
from ddsa_sim.geometry import CArm, Pose
from ddsa_sim.projector import ProjectionImages, Projector, ProjectorVolume
from ddsa_sim.viz.animation import save_animation
from ddsa_sim.viz.figures import contact_sheet, display_window, save_png
from ddsa_sim.volumes import Volume

__all__ = ["ct_projector", "run_sweep", "save_drr_view"]


def ct_projector(ct: Volume, spectrum="90KV_AL40", **kwargs) -> Projector:
    """A projector over one CT (HU -> density and threshold materials)."""
    return Projector([ProjectorVolume.from_ct(ct)], spectrum=spectrum, **kwargs)


def save_drr_view(path: str | Path, images: ProjectionImages, carm: CArm, image: str = "image") -> Path:
    """Write ``view_NNN.npz``: ``neglog``, ``intensity``, ``density_<material>`` (g/cm^2), ``projection_matrix``."""
    path = Path(path)
    arrays = {"neglog": images.neglog[image], "intensity": images.intensity[image],
              "projection_matrix": carm.projection_matrix, "source_mm": carm.source_mm,
              "pose_json": np.array(json.dumps(carm.to_dict()))}
    for material, a in images.area_density_g_per_cm2[image].items():
        arrays["density_" + material.replace(" ", "_")] = a
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def run_sweep(ct: Volume, carm: CArm, poses: Sequence[Pose], out_dir: str | Path, spectrum="90KV_AL40",
              progress: bool = True, animations: Sequence[str] = (), overwrite: bool = False,
              **projector_kwargs) -> list[Path]:
    """Render every pose, save ``view_NNN.npz`` + PNG, a contact sheet (of two or more views) and ``poses.json``,
    and ``sweep.gif`` / ``sweep.mp4`` for each suffix in ``animations`` (``".gif"``, ``".mp4"``); all of them or,
    should a pose fail or the run be interrupted, none. Every pose is checked (C-arm limits, the CT in view) before
    ``overwrite`` clears ``out_dir`` (claimed by the caller) and anything is written."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    proj = ct_projector(ct, spectrum, **projector_kwargs)
    views = [pose.apply(carm) for pose in poses]
    for view in views:
        proj.check_in_view(view, "ct")
    if overwrite:
        clear_output(out_dir)
    paths, images, titles, records = [], [], [], []
    with all_or_nothing(out_dir) as written:  # a failed or interrupted sweep leaves none of its views
        for n, view in enumerate(tqdm(views, desc="views", unit="view", disable=not progress)):
            res = proj.render(view)
            written.append(out_dir / f"view_{n:03d}.npz")
            paths.append(save_drr_view(written[-1], res, view))
            images.append(res.neglog["image"])
            titles.append(f"a={view.alpha_deg:g} b={view.beta_deg:g}")
            records.append({"view": n, "file": paths[-1].name, **view.to_dict()})
        window = display_window(images)
        for n, im in enumerate(images):
            written.append(out_dir / f"view_{n:03d}.png")
            save_png(im, written[-1], window)
        if len(images) > 1:
            written.append(out_dir / "contact_sheet.png")
            contact_sheet(images, titles, written[-1])
        for suffix in animations:
            written.append(out_dir / f"sweep{suffix}")
            save_animation(images, written[-1], window=window)
        written.append(out_dir / "poses.json")
        with atomic_output(written[-1]) as tmp:
            tmp.write_text(json.dumps({"ct": ct.name, "spectrum": proj.spectrum.name, "views": records}, indent=1))
    return paths
