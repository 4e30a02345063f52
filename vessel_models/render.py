"""Off-screen PNG pictures of vessel trees.

The primary backend is pyvista/VTK off-screen rendering of the tube mesh coloured by
radius. Where VTK cannot open an off-screen context (headless machine without EGL or
OSMesa) the picture falls back to a matplotlib 3-D line plot whose line widths follow the
radii. :func:`render_tree_png` returns which backend produced the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vessel_models.io import atomic_output
from vessel_models.tree import VesselInputError, VesselTree

__all__ = ["render_tree_png", "vtk_errors_only"]


@contextmanager
def vtk_errors_only() -> Iterator[None]:
    """VTK's log shows errors only for the block: without a display it warns "bad X server connection" on every
    off-screen window it opens, and renders off screen all the same."""
    from vtkmodules.vtkCommonCore import vtkLogger

    shown = vtkLogger.GetCurrentVerbosityCutoff()
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    try:
        yield
    finally:
        vtkLogger.SetStderrVerbosity(shown)


def _render_pyvista(tree: VesselTree, tmp: str, size: tuple[int, int], title: str | None) -> None:
    import pyvista as pv

    from vessel_models.mesh import tree_to_mesh

    pv.OFF_SCREEN = True
    mesh = tree_to_mesh(tree, method="tubes", n_sides=12)
    with vtk_errors_only():
        plotter = pv.Plotter(off_screen=True, window_size=(int(size[0]), int(size[1])))
    try:
        plotter.set_background("white")
        kw: dict = {}
        if "radius_mm" in mesh.point_data:
            vessel = tree.vessel_nodes()  # a template's 1 um virtual connectors would start the bar at 0
            radii = tree.radii_mm[vessel] if vessel.any() else tree.radii_mm
            kw = {"scalars": "radius_mm", "cmap": "inferno_r", "clim": (float(radii.min()), float(radii.max())),
                  "scalar_bar_args": {"title": "radius (mm)", "color": "black", "vertical": True,
                                       "position_x": 0.8, "position_y": 0.05, "width": 0.08, "height": 0.4}}
        plotter.add_mesh(mesh, color=None if kw else "firebrick", smooth_shading=True, **kw)
        if title:
            plotter.add_text(title, font_size=10, color="black")
        plotter.view_isometric()
        plotter.reset_camera()
        with vtk_errors_only():
            plotter.screenshot(tmp)
    finally:
        plotter.close()


def _render_matplotlib(tree: VesselTree, tmp: str, size: tuple[int, int], title: str | None) -> None:
    from matplotlib.figure import Figure  # not pyplot: a Jupyter kernel keeps its own backend
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    ax = fig.add_subplot(projection="3d")
    lo, hi = tree.bounds_mm()
    if tree.n_nodes > 1:
        e = tree.edges()
        segs = tree.positions_mm[e]  # (E, 2, 3)
        r = 0.5 * (tree.radii_mm[e[:, 0]] + tree.radii_mm[e[:, 1]])
        # points per mm on screen: the longest extent spans ~40 % of the figure width
        pt_per_mm = 0.4 * size[0] / dpi * 72.0 / max(float((hi - lo).max()), 1e-6)
        widths = np.clip(2.0 * r * pt_per_mm, 0.5, 40.0)
        ax.add_collection3d(Line3DCollection(segs, linewidths=widths, colors="firebrick",
                                            capstyle="round", joinstyle="round"))
    else:
        ax.scatter(*tree.positions_mm.T, s=30, c="firebrick")
    ctr = 0.5 * (lo + hi)
    half = 0.5 * float((hi - lo).max())
    ax.set_xlim(ctr[0] - half, ctr[0] + half)
    ax.set_ylim(ctr[1] - half, ctr[1] + half)
    ax.set_zlim(ctr[2] - half, ctr[2] + half)
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_zlabel("z (mm)")
    if title:
        ax.set_title(title)
    fig.savefig(tmp, dpi=dpi, format="png")


def render_tree_png(
    tree: VesselTree,
    path: str | os.PathLike,
    size: tuple[int, int] = (800, 800),
    backend: str = "auto",
    title: str | None = None,
) -> str:
    """Render a tree to a PNG file without a display.

    Parameters
    ----------
    tree : VesselTree
        Tree in mm.
    path : str or PathLike
        Output ``.png`` (written atomically).
    size : tuple of int
        Image width and height, pixels.
    backend : {"auto", "pyvista", "matplotlib"}
        ``"auto"`` tries pyvista off-screen and falls back to matplotlib on failure.
    title : str, optional
        Caption drawn on the picture.

    Returns
    -------
    str
        The backend that produced the image: ``"pyvista"`` or ``"matplotlib"``.

    Raises
    ------
    VesselInputError
        Unknown backend or bad size.
    """
    if backend not in ("auto", "pyvista", "matplotlib"):
        raise VesselInputError(f"unknown render backend {backend!r}; use auto, pyvista or matplotlib")
    w, h = (int(v) for v in size)
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise VesselInputError(f"image size must be within 16..8192 pixels, got {size!r}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(p) as tmp_path:
        tmp = str(tmp_path)
        used = "matplotlib"
        if backend in ("auto", "pyvista"):
            try:
                _render_pyvista(tree, tmp, (w, h), title)
                used = "pyvista"
            except Exception:  # no off-screen context: fall back to matplotlib
                if backend == "pyvista":
                    raise
        if used == "matplotlib":
            _render_matplotlib(tree, tmp, (w, h), title)
    return used
