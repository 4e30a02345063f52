"""3D pictures of an imaging setup (pyvista): CT, vessels, X-ray source, detector, ray frustum, isocenter.

Everything is placed in world millimetres (patient LPS), exactly where :class:`~ddsa_sim.geometry.CArm`
says it is: the source at ``carm.source_mm``, the detector quad at ``carm.detector_corners_mm()`` with
the rendered image textured on it (pixel ``[row, col]`` at ``carm.pixel_to_world((col + .5, row + .5))``),
so the picture is a check of the geometry, not an illustration of it.

>>> plotter = build_plotter(ct, carm, image=drr, tree=tree)        # doctest: +SKIP
>>> save_scene_png(ct, carm, "scene.png", image=drr, tree=tree)    # doctest: +SKIP

Off-screen rendering (``pyvista.OFF_SCREEN`` / ``off_screen=True``) writes PNGs without a display; in
Jupyter :func:`show` displays a plotter with the trame backend where it is installed, else as a static
picture.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.files import atomic_output
from ddsa_sim.viz.figures import display_window, to_uint8
from vessel_models.render import vtk_errors_only

if TYPE_CHECKING:  # pragma: no cover
    import pyvista as pv

    from ddsa_sim.geometry.carm import CArm
    from ddsa_sim.volumes import Volume

__all__ = ["add_scene", "build_plotter", "ct_surface", "detector_mesh", "frustum_mesh", "pose_label",
           "save_scene_png", "show", "source_mesh"]

#: Colours of the scene parts (named colours understood by pyvista).
COLORS = {"bone": "ivory", "skin": "peachpuff", "vessels": "crimson", "source": "gold", "frustum": "orange",
          "isocenter": "magenta", "principal_ray": "darkorange", "L": "red", "P": "green", "S": "blue"}


def pose_label(carm: CArm) -> str:
    """Clinical name of a pose, e.g. ``"RAO 30 / CAU 20"``, from :meth:`~ddsa_sim.geometry.CArm.clinical_angles`
    rounded to 0.1 deg (0 = AP)."""
    primary, secondary = (round(x, 1) + 0.0 for x in carm.clinical_angles())  # + 0.0: no "-0"
    a = "AP" if primary == 0 else f"{'RAO' if primary > 0 else 'LAO'} {abs(primary):g}"
    if secondary == 0:
        return a
    return f"{a} / {'CAU' if secondary > 0 else 'CRA'} {abs(secondary):g}"


def _block_mean(data: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean over non-overlapping blocks (edges that do not fill a block are dropped)."""
    f = [max(1, int(x)) for x in factors]
    n = [s // k for s, k in zip(data.shape, f)]
    if min(n) < 2:
        raise InputError(f"volume of shape {data.shape} is too small to downsample by {f}")
    d = np.asarray(data[: n[0] * f[0], : n[1] * f[1], : n[2] * f[2]], dtype=np.float32)
    return d.reshape(n[0], f[0], n[1], f[1], n[2], f[2]).mean(axis=(1, 3, 5))


def ct_surface(ct: Volume, level_hu: float = 300.0, spacing_mm: float = 2.5) -> pv.PolyData:
    """Iso-surface (marching cubes) of a CT at ``level_hu``, on a grid coarsened to about ``spacing_mm``.

    The CT is block-averaged by an integer factor per axis (a 0.7 x 0.7 x 2.5 mm chest CT at 2.5 mm
    becomes about 3.5 x 3.5 x 2.5 mm blocks, 36x fewer voxels), so the surface takes well under a
    second; the vertices are mapped to world mm (LPS) by the CT affine, whatever its orientation.

    Parameters
    ----------
    ct : Volume
        CT in HU.
    level_hu : float
        Iso-value: about 300 HU shows bone (and contrast-filled vessels), -300 HU the skin.
    spacing_mm : float
        Target voxel size of the coarsened grid (mm); ``0`` keeps the native grid.

    Returns
    -------
    pyvista.PolyData
        Triangulated surface in world mm (empty when no voxel crosses ``level_hu``).
    """
    import pyvista as pv
    from skimage.measure import marching_cubes

    if not np.isfinite(spacing_mm) or spacing_mm < 0:
        raise InputError(f"downsample spacing must be >= 0 mm, got {spacing_mm}")
    factors = np.maximum(1, np.floor(spacing_mm / ct.spacing_mm + 0.5)).astype(int) if spacing_mm > 0 else [1] * 3
    data = _block_mean(ct.data, factors)
    if not (data.min() < level_hu < data.max()):
        return pv.PolyData()
    verts, faces, _, _ = marching_cubes(data, level=float(level_hu))
    # block (a, b, c) covers native voxels f*a .. f*a + f - 1: its centre is native index f*a + (f-1)/2
    f = np.asarray(factors, dtype=np.float64)
    ijk = verts * f + (f - 1.0) / 2.0
    pts = ijk @ ct.affine[:3, :3].T + ct.affine[:3, 3]
    cells = np.hstack([np.full((len(faces), 1), 3, dtype=np.int64), faces.astype(np.int64)]).ravel()
    return pv.PolyData(pts, cells)


def detector_mesh(carm: CArm, image: np.ndarray | None = None,
                  window: tuple[float, float] | None = None) -> tuple[pv.PolyData, pv.Texture | None]:
    """The detector as a quad at ``carm.detector_corners_mm()``, with texture coordinates for ``image``.

    Points are the corners of pixel index ``(u, v) = (0, 0), (W, 0), (W, H), (0, H)`` in that order;
    texture coordinate ``(s, t) = (u / W, 1 - v / H)`` puts image row 0 at the ``v = 0`` edge.

    Parameters
    ----------
    carm : CArm
    image : (H, W) array, optional
        The rendered image (e.g. ``-ln(I/I0)``); shown with high values bright (radiograph convention).
    window : (low, high), optional
        Display window; default: the image's own 0.5-99.5 percentiles.

    Returns
    -------
    (pyvista.PolyData, pyvista.Texture or None)
    """
    import pyvista as pv

    corners = carm.detector_corners_mm()
    quad = pv.PolyData(corners, np.array([4, 0, 1, 2, 3]))
    quad.active_texture_coordinates = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    if image is None:
        return quad, None
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"detector image must be 2D (H, W), got shape {image.shape}")
    if image.shape != (carm.sensor_height, carm.sensor_width):
        raise InputError(f"detector image shape {image.shape} differs from the C-arm detector "
                         f"{carm.sensor_height}x{carm.sensor_width}")
    grey = to_uint8(image, window or display_window([image]))
    return quad, pv.Texture(np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2)))


def source_mesh(carm: CArm, radius_mm: float = 15.0) -> pv.PolyData:
    """A sphere at the X-ray focal spot ``carm.source_mm``."""
    import pyvista as pv

    return pv.Sphere(radius=radius_mm, center=carm.source_mm)


def frustum_mesh(carm: CArm) -> pv.PolyData:
    """Lines from the source to the 4 detector corners, the detector outline and the principal ray."""
    import pyvista as pv

    pts = np.vstack([carm.source_mm, carm.detector_corners_mm(), carm.detector_center_mm])
    lines = [2, 0, 1, 2, 0, 2, 2, 0, 3, 2, 0, 4, 2, 1, 2, 2, 2, 3, 2, 3, 4, 2, 4, 1, 2, 0, 5]
    return pv.PolyData(pts, lines=np.array(lines))


def _axes_meshes(origin: np.ndarray, length_mm: float) -> dict[str, pv.PolyData]:
    import pyvista as pv

    out = {}
    for name, axis in (("L", (1.0, 0.0, 0.0)), ("P", (0.0, 1.0, 0.0)), ("S", (0.0, 0.0, 1.0))):
        out[name] = pv.Arrow(start=origin, direction=axis, scale=length_mm, tip_length=0.18, tip_radius=0.06,
                             shaft_radius=0.02)
    return out


_SURFACES: OrderedDict[tuple[int, float, float], tuple[Any, Any]] = OrderedDict()


def _surface(ct: Volume, level: float, spacing: float) -> pv.PolyData:
    """:func:`ct_surface`, cached for the last few (CT object, level, spacing): notebooks move the C-arm a lot."""
    key = (id(ct), float(level), float(spacing))
    hit = _SURFACES.get(key)
    if hit is not None and hit[0] is ct:
        _SURFACES.move_to_end(key)
        return hit[1]
    surf = ct_surface(ct, level, spacing)
    _SURFACES[key] = (ct, surf)  # holding ct keeps its id from being reused
    while len(_SURFACES) > 6:
        _SURFACES.popitem(last=False)
    return surf


def add_scene(plotter: pv.Plotter, ct: Volume | None, carm: CArm, image: np.ndarray | None = None,
              tree: Any = None, iso_level_hu: float = 300.0, downsample: float = 2.5,
              skin_level_hu: float | None = -500.0, ct_mode: str = "surface",
              image_window: tuple[float, float] | None = None, show_axes: bool = True,
              labels: bool = True, title: str | None = None, camera: str = "room") -> pv.Plotter:
    """Add a setup to the active (sub)plot of ``plotter``; see :func:`build_plotter` for the parameters.

    Actors are named ``ct``, ``skin``, ``vessels``, ``source``, ``detector``, ``frustum``,
    ``isocenter`` and ``axis_L``/``axis_P``/``axis_S`` (``plotter.actors[name].mapper.dataset`` is
    the mesh in world mm).
    """
    import pyvista as pv

    iso = np.asarray(carm.isocenter_mm, dtype=np.float64)
    sdd = float(carm.source_to_detector_distance)
    if ct is not None:
        if ct_mode == "surface":
            bone = _surface(ct, iso_level_hu, downsample)
            if bone.n_points:
                plotter.add_mesh(bone, color=COLORS["bone"], smooth_shading=True, name="ct", specular=0.2,
                                 opacity=0.3 if tree is not None else 1.0)
            else:
                lo, hi = float(np.min(ct.data)), float(np.max(ct.data))
                why = (f"no voxel reaches the iso-surface level {iso_level_hu:g} HU (the CT spans {lo:.0f}..{hi:.0f})"
                       if not lo <= iso_level_hu <= hi else
                       f"no surface at {iso_level_hu:g} HU on the CT's {downsample:g} mm grid")
                warnings.warn(f"{ct.name}: {why}: no CT surface drawn", stacklevel=2)
            if skin_level_hu is not None:
                skin = _surface(ct, skin_level_hu, max(downsample, 4.0))
                if skin.n_points:
                    plotter.add_mesh(skin, color=COLORS["skin"], opacity=0.18, name="skin")
        elif ct_mode == "volume":
            plotter.add_volume(_volume_grid(ct, downsample), cmap="bone", opacity=[0, 0, 0.02, 0.15, 0.35],
                               clim=(-500.0, 1500.0), name="ct", show_scalar_bar=False)
        elif ct_mode != "none":
            raise InputError(f"ct_mode: use surface, volume or none, got {ct_mode!r}")
    if tree is not None:
        from vessel_models.mesh import tree_to_mesh

        plotter.add_mesh(tree_to_mesh(tree, method="tubes", n_sides=10), color=COLORS["vessels"],
                         smooth_shading=True, name="vessels")
    quad, texture = detector_mesh(carm, image, image_window)
    if texture is not None:
        plotter.add_mesh(quad, texture=texture, name="detector", lighting=False)
    else:
        plotter.add_mesh(quad, color="lightsteelblue", opacity=0.6, name="detector")
    plotter.add_mesh(source_mesh(carm, 0.015 * sdd), color=COLORS["source"], name="source")
    plotter.add_mesh(frustum_mesh(carm), color=COLORS["frustum"], line_width=2, name="frustum")
    plotter.add_mesh(pv.Sphere(radius=0.008 * sdd, center=iso), color=COLORS["isocenter"], name="isocenter")
    if show_axes:
        axis_len = 0.2 * sdd
        for name, mesh in _axes_meshes(iso, axis_len).items():
            plotter.add_mesh(mesh, color=COLORS[name], name=f"axis_{name}")
        if labels:
            tips = iso + 1.12 * axis_len * np.eye(3)
            plotter.add_point_labels(tips, ["L (+x)", "P (+y)", "S (+z)"], font_size=14, text_color="black",
                                     shape=None, show_points=False, always_visible=True)
    if labels:
        pts = np.vstack([carm.source_mm, carm.detector_corners_mm()[0], iso])
        plotter.add_point_labels(pts, ["X-ray source", "detector pixel [0, 0]", "isocenter"], font_size=14,
                                 text_color="black", shape_color="white", shape_opacity=0.6, show_points=False,
                                 always_visible=True)
    plotter.add_text(title if title is not None else
                     f"{pose_label(carm)}  (alpha={carm.alpha_deg:g}, beta={carm.beta_deg:g} deg)",
                     font_size=11, color="black", name="title")
    plotter.set_background("white")
    _set_camera(plotter, carm, camera)
    return plotter


def _volume_grid(ct: Volume, spacing_mm: float) -> pv.ImageData:
    import pyvista as pv

    factors = np.maximum(1, np.floor(spacing_mm / ct.spacing_mm + 0.5)).astype(int)
    data = _block_mean(ct.data, factors)
    step = ct.affine[:3, :3] * factors  # columns: world step of one block along i, j, k
    spacing = np.linalg.norm(step, axis=0)
    grid = pv.ImageData(dimensions=data.shape, spacing=spacing)
    grid.direction_matrix = step / spacing
    grid.origin = ct.affine[:3, :3] @ ((factors - 1) / 2.0) + ct.affine[:3, 3]
    grid.point_data["HU"] = data.ravel(order="F")
    return grid


def _set_camera(plotter: pv.Plotter, carm: CArm, camera: str) -> None:
    """``room``: from the patient's right, above and from the feet, anterior (room ceiling) up;
    ``lateral``: from the patient's right; ``feet``: from the feet. The C-arm centred, at one scale for every pose."""
    views = {"room": (-1.0, -0.85, -0.55), "lateral": (-1.0, 0.0, 0.0), "feet": (0.0, 0.0, -1.0)}
    if camera not in views:
        raise InputError(f"camera: use {', '.join(views)}, got {camera!r}")
    pts = np.vstack([carm.source_mm, carm.detector_corners_mm()])
    centre = 0.5 * (pts[0] + pts[1:].mean(axis=0))  # halfway from the source to the detector's centre
    radius = float(np.linalg.norm(pts - centre, axis=1).max())  # the C-arm's own size: the same at every pose
    cam = plotter.camera
    cam.focal_point = tuple(centre)
    cam.up = (0.0, -1.0, 0.0)
    direction = np.asarray(views[camera]) / np.linalg.norm(views[camera])
    # the sphere fits: one scale at every pose (side-by-side views compare), room for the labels at the corners
    cam.position = tuple(centre + direction * radius / np.sin(np.radians(cam.view_angle) / 2.0))
    _centre_view(plotter, pts)
    plotter.reset_camera_clipping_range()


def _centre_view(plotter: pv.Plotter, points_mm: np.ndarray, rounds: int = 3) -> None:
    """Pan the camera until the screen box of ``points_mm`` (world mm) is centred in the (sub)plot.

    A camera reset centres the points' bounding box in space, which in perspective leaves the C-arm off-centre on
    the screen (the detector nearer the camera looms larger than the source; the detector was cut off at the top, the
    picture empty below); this measures where the points land and moves the camera by that much, a few times, as
    panning in perspective changes what it measures a little.
    """
    ren, cam = plotter.renderer, plotter.camera

    def display(point: np.ndarray) -> np.ndarray:
        ren.SetWorldPoint(*point, 1.0)
        ren.WorldToDisplay()
        return np.asarray(ren.GetDisplayPoint(), dtype=np.float64)

    for _ in range(rounds):
        screen = np.array([display(p)[:2] for p in points_mm])
        depth = display(np.asarray(cam.focal_point))[2]
        ren.SetDisplayPoint(*(0.5 * (screen.min(axis=0) + screen.max(axis=0))), depth)  # the box's centre
        ren.DisplayToWorld()
        world = np.asarray(ren.GetWorldPoint(), dtype=np.float64)
        shift = world[:3] / world[3] - np.asarray(cam.focal_point)
        cam.focal_point = tuple(np.asarray(cam.focal_point) + shift)
        cam.position = tuple(np.asarray(cam.position) + shift)


def build_plotter(ct: Volume | None, carm: CArm, image: np.ndarray | None = None, tree: Any = None,
                iso_level_hu: float = 300.0, downsample: float = 2.5, skin_level_hu: float | None = -500.0,
                ct_mode: str = "surface", window_size: tuple[int, int] = (1000, 750),
                off_screen: bool | None = None, **kwargs: Any) -> pv.Plotter:
    """A pyvista plotter showing one imaging setup in world mm (patient LPS).

    Parameters
    ----------
    ct : Volume or None
        CT in HU (iso-surfaces or volume rendering); None shows the geometry only.
    carm : CArm
        The view: source, detector, isocenter.
    image : (H, W) array, optional
        Image rendered at this view (its shape must be the detector's); textured on the detector.
    tree : VesselTree, optional
        Vessel tree in world mm, shown as tubes.
    iso_level_hu : float
        Iso-surface level of the CT (default 300 HU: bone and contrast-filled vessels).
    downsample : float
        Voxel size (mm) the CT is block-averaged to before iso-surfacing or volume rendering.
    skin_level_hu : float or None
        A second, translucent skin surface (default -500 HU); None for none.
    ct_mode : {"surface", "volume", "none"}
        Iso-surfaces, volume rendering, or no CT.
    window_size : (int, int)
        Width and height of the picture (pixels).
    off_screen : bool, optional
        Render without a window (default ``pyvista.OFF_SCREEN``).
    **kwargs
        ``image_window``, ``show_axes``, ``labels``, ``title``, ``camera`` of :func:`add_scene`.

    Returns
    -------
    pyvista.Plotter
        Not yet shown; call :func:`show`, ``plotter.show()`` or ``plotter.screenshot(path)``.
    """
    import pyvista as pv

    off = pv.OFF_SCREEN if off_screen is None else bool(off_screen)
    plotter = pv.Plotter(off_screen=off, window_size=tuple(int(x) for x in window_size))
    return add_scene(plotter, ct, carm, image=image, tree=tree, iso_level_hu=iso_level_hu, downsample=downsample,
                     skin_level_hu=skin_level_hu, ct_mode=ct_mode, **kwargs)


def save_scene_png(ct: Volume | None, carm: CArm, path: str | os.PathLike, image: np.ndarray | None = None,
                   tree: Any = None, window_size: tuple[int, int] = (1000, 750), **kwargs: Any) -> Path:
    """Render :func:`build_plotter` off-screen to a PNG (written atomically); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"scene picture must be a .png file, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with vtk_errors_only():
        plotter = build_plotter(ct, carm, image=image, tree=tree, window_size=window_size, off_screen=True, **kwargs)
    try:
        with atomic_output(path) as tmp, vtk_errors_only():
            plotter.screenshot(str(tmp))
    finally:
        plotter.close()
    return path


def jupyter_backend() -> str:
    """The Jupyter backend of :func:`show`.

    ``$DDSA_SIM_JUPYTER_BACKEND`` when set, else ``"trame"`` when trame (``trame``, ``trame_vtk``,
    ``trame_vuetify``) is installed, else ``"static"`` (a picture; works headless).
    """
    import importlib.util

    env = os.environ.get("DDSA_SIM_JUPYTER_BACKEND")
    if env:
        return env
    if all(importlib.util.find_spec(m) for m in ("trame", "trame_vtk", "trame_vuetify")):
        return "trame"
    return "static"


def show(plotter: pv.Plotter, backend: str | None = None):
    """Show a plotter in Jupyter: interactive (trame) where available, else a static picture."""
    backend = backend or jupyter_backend()
    return plotter.show(jupyter_backend=backend)
