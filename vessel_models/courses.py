"""Smooth courses of template vessels: spline curves with a random bend, and distal trees laid on a surface.

Shared by the arterial (:mod:`vessel_models.willis`) and venous (:mod:`vessel_models.veins`) cerebral
templates. Lengths in mm.
"""

from __future__ import annotations

import math

import numpy as np

from vessel_models.lsystem import cross3, perpendicular, rotate
from vessel_models.tree import TreeBuilder

__all__ = ["DURA_MM", "SCALP_MM", "TENTORIUM_MM", "VIRTUAL_RADIUS_MM", "ellipsoid_normal", "lay_on_surface", "lift_over",
           "smooth_curve", "surface_point"]

#: Radius of a ``virtual`` connector (a tree edge that is no vessel: carries no iodine), mm.
VIRTUAL_RADIUS_MM = 1e-3
#: Half-wavelength (mm) of :func:`smooth_curve`'s undulation.
WIGGLE_HALF_WAVE_MM = 20.0


def smooth_curve(points: list[np.ndarray], start_dir: np.ndarray | None, step_mm: float, tortuosity: float,
                 rng: np.random.Generator, bend_plane_normal: np.ndarray | None = None,
                 wiggle_mm: float = 0.0) -> np.ndarray:
    """Nodes (excluding the first point) of a smooth curve through ``points``.

    A cubic spline in chord-length parameter, leaving along ``start_dir`` when given (tangent
    continuity with the parent), natural otherwise, plus a bend ``A sin^2(pi s) (c1 n1 + c2 cos(pi s) n2)``
    across the chord with ``A = tortuosity * chord * U(0.5, 1.5)`` and ``c1, c2 ~ U(-1, 1)``: zero offset
    and slope at both ends, so junctions stay put and the curve still leaves along ``start_dir``; the
    ``cos`` term turns the bend out of its plane (torsion). With ``wiggle_mm``, an undulation
    ``W sin(pi s) sin(m pi s) n3`` on top (``W = wiggle_mm * U(0.5, 1.5)``, less on chords under three
    :data:`WIGGLE_HALF_WAVE_MM` in proportion, ``m - 1`` the chord in half-waves, at least 1; ``n3`` another
    random direction across the chord), also flat at both ends: the bend alone leaves a long artery straight for
    centimetres, while a short one's course is its via points'. ``bend_plane_normal``: the bend's
    component along this unit vector is removed and ``n3`` is the plane's direction across the chord, so both
    stay in the plane (a vessel in a fissure); the same draws are taken either way.
    """
    from scipy.interpolate import CubicSpline

    pts = np.asarray(points, dtype=np.float64)
    u = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    start_bc = (1, start_dir / np.linalg.norm(start_dir)) if start_dir is not None else (2, np.zeros(3))
    dense = CubicSpline(u, pts, bc_type=(start_bc, (2, np.zeros(3))))(np.linspace(0.0, u[-1], 256))
    chord = pts[-1] - pts[0]
    length = float(np.linalg.norm(chord))
    s = np.linspace(0.0, 1.0, 256)

    if tortuosity > 0 and length > 0:
        axis = chord / length
        n1 = rotate(perpendicular(axis), axis, rng.uniform(0.0, 2.0 * math.pi))
        n2 = np.cross(axis, n1)
        amp = tortuosity * length * rng.uniform(0.5, 1.5)
        c1, c2 = rng.uniform(-1.0, 1.0, 2)
        bend = c1 * n1 + c2 * np.cos(np.pi * s)[:, None] * n2
        if bend_plane_normal is not None:
            bend = bend - np.outer(bend @ bend_plane_normal, bend_plane_normal)
        dense = dense + amp * (np.sin(np.pi * s) ** 2)[:, None] * bend
    if wiggle_mm > 0 and length > 0:
        axis = chord / length
        n3 = rotate(perpendicular(axis), axis, rng.uniform(0.0, 2.0 * math.pi))
        in_plane = None if bend_plane_normal is None else _unit(cross3(bend_plane_normal, axis))
        n3 = n3 if in_plane is None else math.copysign(1.0, float(n3 @ in_plane)) * in_plane
        m = 1 + max(1, round(length / WIGGLE_HALF_WAVE_MM))
        amp = wiggle_mm * rng.uniform(0.5, 1.5) * min(1.0, length / (3.0 * WIGGLE_HALF_WAVE_MM))
        wave = amp * np.sin(np.pi * s) * np.sin(m * np.pi * s)
        dense = dense + wave[:, None] * n3
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    n = max(2, int(math.ceil(arc[-1] / step_mm)))
    targets = np.linspace(0.0, arc[-1], n + 1)[1:]
    return np.stack([np.interp(targets, arc, dense[:, k]) for k in range(3)], axis=1)


def surface_point(p: np.ndarray, centre: np.ndarray, axes: np.ndarray, depth_mm: float) -> np.ndarray:
    """``p`` moved radially (from ``centre``) onto the ellipsoid ``axes``, ``depth_mm`` inside it."""
    r = p - centre
    on = r / max(float(np.sqrt(np.sum((r / axes) ** 2))), 1e-9)
    norm = float(np.linalg.norm(on))
    return centre + on * max(0.0, 1.0 - depth_mm / max(norm, 1e-9))


#: Least distance (mm) of a hemisphere's cortical vessels from the midline plane: half the falx and the pia.
MIDLINE_GAP_MM = 1.5
#: A laid edge turns from the one before by at most its grown turn plus this (deg): laying bends no hairpins.
LAID_EXTRA_TURN_DEG = 20.0
#: The medial trees' plane: this far (mm) from the midline, approached by this fraction of the way at each node.
MEDIAL_PLANE_MM, MEDIAL_PULL = 3.0, 0.2
SAGITTAL = np.array([1.0, 0.0, 0.0])
#: The lateral convexity (the middle cerebral artery's territory): where the brain's outward normal has at least
#: this lateral component. Below it lie the inferior temporal and occipital surfaces (the posterior cerebral
#: artery's) and, over the vertex, the parasagittal strip (the anterior cerebral artery's).
CONVEXITY_MIN_NX = 0.4
#: Distance (mm) outside the brain ellipsoid of the dura's outer (periosteal) layer, where the middle meningeal
#: artery's branches run: outside the cortical veins (0.5 mm deep) and the sinuses between the dura's layers
#: (:data:`vessel_models.veins.SINUS_OFFSET_MM`, 2 mm), under the skull's inner table (about 4 mm).
DURA_MM = 3.0
#: The scalp's vessels' distance (mm) outside the brain ellipsoid: over a skull of ~6 mm.
SCALP_MM = 10.0
#: Height (mm) over the cerebellum's ellipsoid of the brain's underside where it rests on the tentorium, about 1 mm of
#: dura: the trees laid on the brain keep their depth under it there (:func:`lift_over`).
TENTORIUM_MM = 1.0
#: A tree grown deep below its surface reaches it over at least this many times its depth of path.
ROOT_CLIMB = 3.0
#: Range of a laid branch's sideways bend, as a fraction of its chord (:func:`_bend_branches`).
LAID_BEND = (0.1, 0.35)
#: A bend turns no node of a branch by more than this (deg), or than it turned before: no bend folds it back.
LAID_BEND_MAX_TURN_DEG = 100.0


def _unit(v: np.ndarray) -> np.ndarray | None:
    """``v`` normalised, or ``None`` for a (near) zero vector."""
    norm = math.sqrt(float(v @ v))  # np.linalg.norm's float, without its overhead
    return v / norm if norm > 1e-9 else None


def ellipsoid_normal(point: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> np.ndarray | None:
    """The outward unit normal (3,) of the ellipsoid (``centre``, semi-axes ``axes``, mm) through ``point``'s level
    set; ``None`` at the centre."""
    return _unit((point - centre) / axes**2)


def lift_over(b: TreeBuilder, first: int, centre: np.ndarray, axes: np.ndarray, clearance_mm: float) -> None:
    """Move the nodes ``first..`` of ``b`` that lie under the upper surface of the ellipsoid (``centre``, semi-axes
    ``axes`` + ``clearance_mm``, mm), inside it or below it, straight up (+z) onto that surface.

    The brain ellipsoid's underside reaches into the cerebellum's place; the tentorium parts them, and a tree laid on
    the brain above it (the posterior cerebral artery's on the occipital lobe, the vein of Labbe's on the temporal
    lobe) runs over the tentorium instead. A node inside moves the less the nearer it lies to the upper surface or the
    rim (nil on them), so a tree reaching in from above or from the side keeps its shape where it enters; one below
    goes up with the column above it (near the cerebellum's front the brain ellipsoid dips under it: lifting only the
    nodes inside left edges of a vein of Labbe's tree 20-25 mm long through the cerebellum, seeds 6 and 12).
    """
    pos = np.array([b.position(i) for i in range(first, b.n_nodes)]).reshape(-1, 3)
    big = np.asarray(axes, dtype=np.float64) + clearance_mm
    rel = (pos - centre) / big
    footprint = 1.0 - rel[:, 0] ** 2 - rel[:, 1] ** 2  # > 0 over the ellipsoid's outline seen from above
    height = np.sqrt(np.clip(footprint, 0.0, None))  # of its upper surface over the centre, in semi-axes
    for k in np.nonzero((footprint > 0.0) & (rel[:, 2] < height))[0]:
        b.set_position(first + int(k), np.array([pos[k, 0], pos[k, 1], centre[2] + big[2] * height[k]]))


def _turn_deg(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Angle (deg) between the directions ``a`` and ``b``; 0 where either is undefined."""
    ua, ub = (None, None) if a is None or b is None else (_unit(a), _unit(b))
    if ua is None or ub is None:
        return 0.0
    return math.degrees(math.acos(float(np.clip(ua @ ub, -1.0, 1.0))))


def _aligning(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The least rotation (3x3) that turns the unit vector ``a`` into the unit vector ``b`` (Rodrigues)."""
    v, c = cross3(a, b), float(a @ b)
    if c < -1.0 + 1e-9:  # opposite: half a turn about any axis across them
        axis = perpendicular(a)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def _surface_step(edge: np.ndarray, normal: np.ndarray, heading: np.ndarray | None, max_turn_deg: float) -> np.ndarray:
    """A grown ``edge`` laid in the tangent plane of ``normal``, same length, turning at most ``max_turn_deg``.

    Its tangent component gives the direction; where that component is short (an edge grown nearly along the
    normal, whose sideways wiggle would otherwise become a reversal) the previous ``heading`` (unit) is blended
    in, all of it at zero tangent component and none from half the edge's length up.
    """
    length = float(np.linalg.norm(edge))
    tangent = edge - normal * float(edge @ normal)
    prev = None if heading is None else _unit(heading - normal * float(heading @ normal))
    t_len = float(np.linalg.norm(tangent))
    d = tangent / t_len if t_len > 1e-9 else None
    if prev is not None:
        k = min(1.0, max(0.0, 1.0 - t_len / (0.5 * length)))
        d = _unit(prev if d is None else (1.0 - k) * d + k * prev)
        d = prev if d is None else d
        turn = math.radians(_turn_deg(prev, d))
        limit = math.radians(max_turn_deg)
        if turn > limit:  # rotate the heading towards d by the limit, within the tangent plane
            side = _unit(d - prev * float(d @ prev))
            side = cross3(normal, prev) if side is None else side
            d = math.cos(limit) * prev + math.sin(limit) * side
    if d is None:
        d = perpendicular(normal)
    return length * d


def _surface(kind: str, axes: np.ndarray, depth_mm: float, scale_mm: float) -> tuple[np.ndarray, float] | None:
    """The ellipsoid semi-axes (mm) and depth below it (mm) a ``kind`` of tree is laid on; ``None``: no surface."""
    if kind in ("cortex", "convexity"):
        return axes, depth_mm
    return {"scalp": (axes + SCALP_MM * scale_mm, 0.0), "dura": (axes + DURA_MM * scale_mm, 0.0)}.get(kind)


def _bend_branches(b: TreeBuilder, first: int, kind: str, side: float, centre: np.ndarray, axes: np.ndarray,
                   depth_mm: float, scale_mm: float, rng: np.random.Generator) -> None:
    """Bend each laid branch of the nodes ``first..`` sideways along its surface (the distal trees' tortuosity).

    A branch (between junctions: the root, a bifurcation, a tip) is offset across its chord, in the surface's tangent
    plane (``cortex``, ``convexity``, ``dura``, ``scalp``: the ellipsoid's; ``medial``: the sagittal plane), by
    ``A sin^2(pi s)`` (``s``: its fraction of the branch's path), ``A = chord x U(`` :data:`LAID_BEND` ``)`` of
    either sign: the ends and their directions stay, so the junctions and the subtrees below do not move; then
    the node is put back at its own level (on its surface, or as deep below it as it was) and on its side of the
    midline. Where that would turn a node by more than :data:`LAID_BEND_MAX_TURN_DEG` (or than it turned already)
    the bend is halved, up to 3 times, else left out.
    Unbent, the laid trees keep the grown ones' nearly straight branches (median distance metric 1.07; published
    intracranial 1.1-1.4).
    """
    surface = _surface(kind, axes, depth_mm, scale_mm)
    n_children: dict[int, int] = {}
    for i in range(first, b.n_nodes):
        n_children[b.parent(i)] = n_children.get(b.parent(i), 0) + 1
    chains: dict[int, list[int]] = {}  # from a junction (the root, a bifurcation) to the next or a tip, by last node
    for i in range(first, b.n_nodes):
        j = b.parent(i)
        chains[i] = [i] if j < first or n_children[j] > 1 else chains.pop(j) + [i]
    for ids in chains.values():
        path = np.array([b.position(b.parent(ids[0]))] + [b.position(i) for i in ids])
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
        amp = float(np.linalg.norm(path[-1] - path[0])) * rng.uniform(*LAID_BEND) * rng.choice([-1.0, 1.0])
        if len(ids) < 2 or arc[-1] <= 0:
            continue
        limit = np.maximum(_turns_deg(path), LAID_BEND_MAX_TURN_DEG)
        for _ in range(4):  # halved where it would turn a node too sharply (a short branch grown curled)
            bent = _bent_path(path, arc, amp, kind, side, centre, axes, depth_mm, surface)
            if np.all(_turns_deg(bent) <= limit):
                for k, i in enumerate(ids[:-1], start=1):
                    b.set_position(i, bent[k])
                break
            amp *= 0.5


def _turns_deg(path: np.ndarray) -> np.ndarray:
    """Turn (deg) at each interior node of the polyline ``path`` (N, 3): N - 2 values."""
    a, c = np.diff(path, axis=0)[:-1], np.diff(path, axis=0)[1:]
    cos = np.sum(a * c, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(c, axis=1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _level(p: np.ndarray, centre: np.ndarray, surface: tuple[np.ndarray, float]) -> float:
    """Distance of ``p`` from ``centre`` as a fraction of its surface point's (1 on the surface)."""
    return float(np.linalg.norm(p - centre)) / max(float(np.linalg.norm(surface_point(p, centre, *surface) - centre)),
                                                   1e-9)


def _bent_path(path: np.ndarray, arc: np.ndarray, amp: float, kind: str, side: float, centre: np.ndarray,
               axes: np.ndarray, depth_mm: float, surface: tuple[np.ndarray, float] | None) -> np.ndarray:
    """``path`` offset across its chord by ``amp sin^2(pi arc / arc[-1])`` (mm) along its surface (see
    :func:`_bend_branches`), each moved node put back at its level and on its side of the midline."""
    out = path.copy()
    chord = path[-1] - path[0]
    for k in range(1, len(path) - 1):
        normal = SAGITTAL if surface is None else ellipsoid_normal(path[k], centre, surface[0])
        across = None if normal is None else _unit(cross3(normal, chord))
        if across is None:
            continue
        q = path[k] + amp * math.sin(math.pi * arc[k] / arc[-1]) ** 2 * across
        if surface is not None:  # back at the node's own level: a node still on its way to the surface stays so
            q = centre + _level(path[k], centre, surface) * (surface_point(q, centre, *surface) - centre)
        elif np.sum(((q - centre) / (axes - depth_mm)) ** 2) > 1:  # the medial trees stay inside the brain
            q = surface_point(q, centre, axes, depth_mm)
        if kind in ("cortex", "convexity", "dura", "medial"):
            q[0] = centre[0] + side * max(side * (q[0] - centre[0]), MIDLINE_GAP_MM)
        out[k] = q
    return out


def lay_on_surface(b: TreeBuilder, first: int, root: int, kind: str, side: float, centre: np.ndarray,
                    axes: np.ndarray, depth_mm: float, blend_mm: float, scale_mm: float,
                    rng: np.random.Generator | None = None) -> None:
    """Move the nodes ``first..`` of a distal tree grown at node ``root`` onto its surface.

    ``cortex``: the brain ellipsoid, ``depth_mm`` deep; ``convexity``: the same, on the lateral convexity only
    (:data:`CONVEXITY_MIN_NX`); ``dura``: :data:`DURA_MM` outside the brain ellipsoid (the dura lining the
    skull); ``scalp``: in the scalp (:data:`SCALP_MM` x ``scale_mm`` outside the brain);
    ``medial``: squashed towards the hemisphere's medial surface (3 mm from the midline) and kept
    inside the brain; ``face``: left as grown but in its half of the face; ``free``: left as grown.

    The tree is laid edge by edge from the root, each edge from its parent's already-laid node: on the cortex
    and the scalp an edge keeps its length and takes the direction of its component in the surface's tangent
    plane (:func:`_surface_step`), then its end is put back on the surface; an edge turns from the one before by
    at most its grown turn plus :data:`LAID_EXTRA_TURN_DEG`, so a stretch grown along the surface normal
    neither collapses nor folds. Over the first ``blend_mm`` of path (at least :data:`ROOT_CLIMB` times the root's
    depth below its surface) the laid edge is blended with the grown one (a branch leaving a fissure), never past
    the surface. On the cortex, the medial surface and the face a node stays on its side
    (``side``: +1 left, -1 right), at least :data:`MIDLINE_GAP_MM` from the midline: where a branch would cross
    it, the rest of that branch and its subtree are mirrored (the falx parts the hemispheres, the nasal septum
    the nasal cavities; the dura's trees stop at the falx too), so it turns away instead of folding back; on the
    convexity likewise where it would leave the convexity; a face branch mirrored head-on runs along the midline.
    With ``rng``, each laid branch (but the face's) is then bent sideways along its surface
    (:func:`_bend_branches`).
    """
    if kind == "free":
        return
    surface = _surface(kind, axes, depth_mm, scale_mm)
    keep_side = kind in ("cortex", "convexity", "dura", "medial", "face")
    root_x = float(b.position(root)[0])

    def margin(q: np.ndarray) -> float:
        """How far ``q`` lies inside its side (mm from the midline gap; on the convexity: the normal's excess, and
        no deeper than the root, as a fraction of the brain's half-width: under the root lies the temporal lobe's
        underside)."""
        if kind == "convexity":
            return min(side * float(ellipsoid_normal(q, centre, axes)[0]) - CONVEXITY_MIN_NX,
                       side * (q[0] - root_x) / axes[0])
        return side * (q[0] - centre[0]) - MIDLINE_GAP_MM

    if surface is not None:  # a deep root (an M2 in the sylvian fissure) climbs to its surface at most 1 in ROOT_CLIMB
        blend_mm = max(blend_mm, ROOT_CLIMB * float(np.linalg.norm(surface_point(b.position(root), centre, *surface)
                                                                   - b.position(root))))
    up = b.parent(root)
    laid = {root: b.position(root)}
    heading = {root: None if up < 0 else _unit(b.position(root) - b.position(up))}
    grown_in = {root: None if up < 0 else b.position(root) - b.position(up)}
    mirrored = {root: False}
    frame = {root: np.eye(3)}  # grown directions to laid ones: the turns laying made so far, carried down the tree
    dist = {root: 0.0}
    for i in range(first, b.n_nodes):
        j = b.parent(i)
        p, pj = b.position(i), b.position(j)
        dist[i] = dist[j] + float(np.linalg.norm(p - pj))
        grown_in[i] = p - pj
        max_turn = _turn_deg(grown_in[j], grown_in[i]) + LAID_EXTRA_TURN_DEG
        w = min(1.0, dist[i] / blend_mm)
        tries = []
        for mirror in (mirrored[j], not mirrored[j]):  # the second: the branch mirrored, where the first crosses
            flip = np.array([-1.0 if mirror else 1.0, 1.0, 1.0])
            step = flip * (frame[j] @ grown_in[i])
            if kind == "face":  # a branch mirrored head-on would fold back: it runs along the midline instead
                head_on = mirror != mirrored[j] and _turn_deg(heading[j], step) > max_turn
                q = laid[j] + (_surface_step(step, SAGITTAL, heading[j], max_turn) if head_on else step)
            elif kind == "medial":  # along the sagittal plane 3 mm off the midline, 15 % of the grown x kept
                along = _surface_step(step, SAGITTAL, heading[j], max_turn)
                along[0] = 0.15 * step[0]
                q = laid[j] + (1.0 - w) * step + w * along
                q[0] += w * MEDIAL_PULL * (side * MEDIAL_PLANE_MM - q[0])
                inner = axes - depth_mm
                if np.sum(((q - centre) / inner) ** 2) > 1:  # kept inside the brain: along its surface there
                    normal = ellipsoid_normal(laid[j], centre, inner)
                    q = laid[j] + (step if normal is None else _surface_step(q - laid[j], normal, heading[j],
                                                                             max_turn))
                    q = surface_point(q, centre, axes, depth_mm)
            else:
                ax, depth = surface
                normal = ellipsoid_normal(laid[j], centre, ax)
                if normal is not None:
                    step = (1.0 - w) * step + w * _surface_step(step, normal, heading[j], max_turn)
                q = laid[j] + step
                q = q + w * (surface_point(q, centre, ax, depth) - q)
                if _level(q, centre, surface) > 1.0:  # a long climb overshoots no surface
                    q = surface_point(q, centre, ax, depth)
            tries.append((margin(q), mirror, q))
            if not keep_side or tries[-1][0] >= 0.0:
                break
        _, mirrored[i], q = tries[0] if tries[0][0] >= tries[-1][0] else tries[-1]  # the one further on its side
        flip = np.array([-1.0 if mirrored[i] else 1.0, 1.0, 1.0])
        if keep_side:  # what the mirrored course still has across stays at the gap
            q[0] = centre[0] + side * max(side * (q[0] - centre[0]), MIDLINE_GAP_MM)
        laid[i] = q
        done = _unit(flip * (q - laid[j]))
        before = _unit(frame[j] @ grown_in[i])
        frame[i] = frame[j] if done is None or before is None else _aligning(before, done) @ frame[j]
        heading[i] = _unit(q - laid[j]) if _unit(q - laid[j]) is not None else heading[j]
    for i in range(first, b.n_nodes):
        b.set_position(i, laid[i])
    if rng is not None and kind != "face":
        _bend_branches(b, first, kind, side, centre, axes, depth_mm, scale_mm, rng)
