"""Cerebral venous template: dural sinuses, cortical veins and internal jugular veins.

Drawn in the frame of the arterial template (:mod:`vessel_models.willis`: patient LPS, mm, around
the brain ellipsoid ``centre`` / ``axes``), so one placement registers both to a CT's intracranial
volume. Named segments (``_L`` / ``_R`` per side):

* ``SSS_post`` (torcula -> bregma) and ``SSS_ant`` (bregma -> frontal end): the superior sagittal
  sinus on the midline of the brain's upper surface, widening towards the torcula;
* ``TS`` (transverse sinus, torcula -> lateral along the tentorium), ``SS`` (sigmoid sinus, down to
  the jugular foramen), ``IJV`` (internal jugular vein, down the neck lateral to the carotid);
* ``CorV1..n`` (superior cortical veins, each the trunk of a small L-system tree laid on the cortex,
  entering the SSS) and ``Labbe`` (vein of Labbé over the temporal lobe into the TS);
* the deep veins: ``StS`` (straight sinus, torcula -> forwards and up along the tentorium), ``VG`` (vein of
  Galen, down under the splenium), ``ICV`` (internal cerebral vein, forwards along the roof of the third
  ventricle to the foramen of Monro, 2-4 mm off the midline), ``BVR`` (basal vein of Rosenthal, around the
  midbrain to the anterior perforated substance), ``ISS`` (inferior sagittal sinus, from the straight
  sinus forwards along the falx's free edge above the corpus callosum), and at the foramen of Monro the venous
  angle: ``TSV`` (thalamostriate vein, back along the caudothalamic groove) and ``SepV`` (septal vein, forwards
  along the septum pellucidum).

Diameters (docs/vessels.md §3, "Veins"): SSS 2.6 -> 5.7 mm from front to lambda (CT venography),
transverse sinus right 6.65, left 5.37 mm (MR venography; right dominance), internal jugular right
17, left 14 mm (CT); internal cerebral vein 2.05 mm where it ends, 1.49 mm where it begins, and the lengths of
the straight sinus, vein of Galen and internal cerebral vein (CT angiography, Hou et al. 2021); sigmoid sinus,
cortical veins and the other deep veins typical values. The venous part is hung on a
``virtual`` connector from the arterial root and rooted at the lower end of the right IJV (the tree
runs against the flow there; the bolus model uses ``metadata["venous_inflow_nodes"]``, the capillary
ends of the cortical veins and the far ends of the deep veins, to fill the veins downstream:
:mod:`vessel_models.bolus`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from vessel_models.courses import (
    MIDLINE_GAP_MM,
    TENTORIUM_MM,
    VIRTUAL_RADIUS_MM,
    ellipsoid_normal,
    lay_on_surface,
    lift_over,
    smooth_curve,
    surface_point,
)
from vessel_models.lsystem import LSystemParams, grow_lsystem
from vessel_models.tree import TreeBuilder

__all__ = ["DEEP_VEIN_DIAMETERS_MM", "VEIN_DIAMETERS_MM", "add_cerebral_veins"]

#: Diameters (mm) at the start and end of each venous segment, in the tree's direction (from the torcula
#: outwards for the sinuses, upwards for the right IJV, downwards for the left one).
VEIN_DIAMETERS_MM: dict[str, tuple[float, float]] = {
    "IJV_R": (15.0, 11.0),
    "SS_R": (8.0, 7.0),
    "TS_R": (6.7, 6.7),
    "SSS_post": (6.0, 3.8),
    "SSS_ant": (3.7, 2.5),
    "TS_L": (5.4, 5.4),
    "SS_L": (6.0, 6.5),
    "IJV_L": (9.0, 12.0),
    "CorV": (2.5, 2.0),
    "Labbe": (2.5, 2.0),
}
#: The deep veins' diameters (mm), start and end in the tree's direction (from the straight sinus outwards).
#: ICV: 2.05 where it joins the vein of Galen, 1.49 at the foramen of Monro (Hou et al. 2021); the others are
#: typical values, not from a source (docs/vessels.md, "Deep veins").
DEEP_VEIN_DIAMETERS_MM: dict[str, tuple[float, float]] = {
    "StS": (4.5, 4.0),
    "VG": (4.0, 3.5),
    "ISS": (2.0, 1.2),
    "ICV": (2.05, 1.49),
    "BVR": (2.0, 1.5),
    "TSV": (1.5, 1.0),
    "SepV": (1.2, 0.8),
}
#: The share of the template's bend of the veins held in place by their surroundings: the internal cerebral
#: veins run side by side 2-5 mm off the midline in the roof of the third ventricle, where a full bend (up to 5 mm
#: across) would cross them, their tributaries in the walls of the lateral ventricles, and the internal jugular
#: veins run in the carotid sheath, where one (up to 30 mm) would lay them over the carotid or the vertebral artery.
CONFINED_BEND = 0.3
#: The veins that bend by :data:`CONFINED_BEND` of the template's tortuosity.
CONFINED_VEINS = ("IJV", "ICV", "TSV", "SepV")
#: The sinuses in the falx's edges, which follow the midline without a bend of their own: the superior sagittal
#: sinus along the vault (in a frontal view a straight band on the midline, not a loop), the straight sinus along
#: the falx's junction with the tentorium, the inferior sagittal sinus along its free edge.
FALX_SINUSES = ("SSS", "StS", "ISS")
#: The veins that give way to the arteries (:func:`_make_way`): the jugulars in the carotid sheath and the deep veins
#: outside the dura; not the dural sinuses, which are rigid.
GIVING_WAY = ("IJV", "ICV", "BVR", "TSV", "SepV")
#: The veins the arteries give way to (:func:`_arteries_make_way`) and pass beneath: the dural sinuses on the brain's
#: surface, rigid in the dura (the medial surface's arteries run 3 mm off the midline under the superior sagittal
#: sinus, the posterior cerebral's cortical branches over the tentorium under the transverse sinus), and the cortical
#: veins, held where they bridge to a sinus and laid nearer the surface than the arteries (0.5 against 3 mm deep).
SURFACE_VEINS = ("SSS", "TS", "SS_", "CorV", "Labbe")
#: The veins the arteries give way to by moving aside, away from the midline: the straight and inferior sagittal sinus,
#: rigid in the falx, and the vein of Galen, held at both ends under the splenium, with each hemisphere's medial
#: arteries beside them.
MIDLINE_VEINS = ("StS", "ISS", "VG")
#: Least gap (mm) between a giving vein's and an artery's walls (node spheres): the tubes between nodes may come
#: closer by the chord's sagitta at the template's step.
ARTERY_GAP_MM = 0.5
#: Standard deviation (mm) of the smoothing along a vein of its giving way to the arteries.
GIVE_WAY_MM = 8.0
#: Where the fade of a vein's giving way towards its held ends (``sqrt(sin(pi t))``, ``t`` its fraction of the vein) is
#: below this, the vein is held (the outer 8 % at each end): an artery overlapping it there makes way instead. Before
#: 2026-12-07 such overlaps pushed the vein too, each round's push scaled up to 20-fold to clear them, and round after
#: round the jugular vein was thrown 94 mm out of the neck beside the cerebellar arteries (seed 2), an internal cerebral
#: vein 34 mm off the midline (seed 6, among the pericallosal artery's twigs).
HELD_FADE = 0.5
#: The arteries stop giving way once no overlap needs more than this (mm) to clear :data:`ARTERY_GAP_MM`: an artery
#: held at the midline gap beside a vein's held end came clear by 7 % of its last move a round, 50 rounds long (seed 4:
#: 6.1 s for the tree; with this tolerance 26 rounds, 4.3-4.9 s; 2.1-2.2 s before the veins' ends were held).
ARTERIES_GIVE_WAY_TOLERANCE_MM = 0.05
#: Superior cortical veins per hemisphere.
CORTICAL_VEINS_PER_SIDE = 5
#: Depth (mm) of the cortical veins under the brain ellipsoid: nearer its surface than the arteries (their
#: ``cortical_depth_mm``, 3 mm).
CORTICAL_VEIN_DEPTH_MM = 0.5
SINUS_OFFSET_MM = 2.0  # sinuses run in the dura, just outside the brain surface


def _segments(centre: np.ndarray, axes: np.ndarray, scale: float) -> dict[str, list[np.ndarray]]:
    """Via points of the named sinus / jugular segments, in tree order."""
    def on_dura(p: tuple[float, float, float]) -> np.ndarray:
        return surface_point(centre + np.asarray(p, dtype=np.float64) * scale, centre, axes + SINUS_OFFSET_MM, 0.0)

    def free(p: tuple[float, float, float]) -> np.ndarray:
        return centre + np.asarray(p, dtype=np.float64) * scale

    def midline(phi_deg: float) -> np.ndarray:  # angle over the vertex from the frontal pole
        phi = np.radians(phi_deg)
        return on_dura((0.0, -np.cos(phi) * 84.0, np.sin(phi) * 58.0))

    torcula = midline(192.0)
    out: dict[str, list[np.ndarray]] = {
        "SSS_post": [torcula, midline(160.0), midline(125.0), midline(95.0)],
        "SSS_ant": [midline(95.0), midline(50.0), midline(-10.0)],  # to the foramen caecum, level with the cribriform plate
    }
    for s, sx in (("L", 1.0), ("R", -1.0)):
        ts_end = on_dura((57.0 * sx, 42.0, -20.0))
        jugular = free((32.0 * sx, 12.0, -60.0))
        out[f"TS_{s}"] = [torcula, on_dura((38.0 * sx, 70.0, -16.0)), ts_end]
        out[f"SS_{s}"] = [ts_end, free((44.0 * sx, 30.0, -48.0)), jugular]
        # down the carotid sheath lateral to the carotid and slightly in front of it (in the arterial template's frame
        # 14 mm lateral, 1-2 mm anterior), clear of the vertebral artery behind in its transverse foramina
        out[f"IJV_{s}"] = [jugular, free((35.0 * sx, -10.0, -110.0)), free((38.0 * sx, -16.0, -172.0))]
    out["IJV_R"] = out["IJV_R"][::-1]
    out["SS_R"] = out["SS_R"][::-1]
    out["TS_R"] = out["TS_R"][::-1]
    return out


def _deep_segments(centre: np.ndarray, torcula: np.ndarray, scale: float) -> dict[str, list[np.ndarray]]:
    """Via points of the deep veins (after the torcula, each segment's first point is its parent's end).

    Chords are about 8 % shorter than the cited lengths, which the template's bend adds back (Hou et al. 2021:
    straight sinus 43.6, vein of Galen 9.3, internal cerebral vein 36.9 mm). The vein of Galen rises steeply
    behind the splenium and the straight sinus descends at about 25 deg to the torcula: about 85 deg between
    them at their junction (Hou et al.: 77 +- 18 deg).
    """
    def at(p: tuple[float, float, float]) -> np.ndarray:
        return centre + np.asarray(p, dtype=np.float64) * scale

    junction, galen = at((0.0, 45.5, 5.6)), at((0.0, 42.5, -2.9))  # straight sinus / vein of Galen; ICV confluence
    out: dict[str, list[np.ndarray]] = {
        "StS": [torcula, junction],
        "VG": [junction, galen],
        "ISS": [junction, at((0.0, 32.0, 30.0)), at((0.0, 2.0, 41.0)), at((0.0, -28.0, 37.0))],  # 10 mm above the A3
    }
    for s, sx in (("L", 1.0), ("R", -1.0)):
        monro = at((2.5 * sx, 9.0, -1.0))
        out[f"ICV_{s}"] = [galen, at((3.5 * sx, 25.0, 2.0)), monro]
        # the venous angle: the thalamostriate vein comes forwards and down along the caudothalamic groove, the
        # septal vein back along the septum pellucidum from the frontal horn, both into the ICV at the foramen
        out[f"TSV_{s}"] = [monro, at((9.0 * sx, 18.0, 7.0)), at((15.0 * sx, 32.0, 12.0))]
        out[f"SepV_{s}"] = [monro, at((4.0 * sx, -4.0, 6.0)), at((8.0 * sx, -18.0, 10.0))]
        out[f"BVR_{s}"] = [galen, at((9.0 * sx, 36.0, -9.0)), at((16.0 * sx, 22.0, -16.0)), at((19.0 * sx, 6.0, -20.0)),
                           at((16.0 * sx, -4.0, -22.0))]
    return out


#: Radius bins (mm) of the spheres a :class:`_Spheres` keeps apart: each bin is searched to its own largest radius,
#: not the set's (a few sinus spheres 5-7 mm wide had each of the thousands of 0.5 mm cortical-vein spheres searched
#: as far, 600 000 candidate pairs per round for some 50 overlaps).
SPHERE_BINS_MM = (0.5, 1.0, 2.0, 4.0)


def _radius_bins(radii: np.ndarray) -> list[np.ndarray]:
    """Indices of ``radii`` per bin of :data:`SPHERE_BINS_MM` (empty bins left out)."""
    which = np.digitize(radii, SPHERE_BINS_MM)
    return [idx for k in range(len(SPHERE_BINS_MM) + 1) if len(idx := np.nonzero(which == k)[0])]


class _Spheres:
    """Fixed spheres (centres (N, 3) mm, radii (N,) mm), binned by radius with a KD-tree per bin, to find the pairs of
    other spheres that overlap them."""

    def __init__(self, centres: np.ndarray, radii: np.ndarray) -> None:
        self.centres, self.radii = centres, radii
        self.bins = [(idx, cKDTree(centres[idx]), float(radii[idx].max())) for idx in _radius_bins(radii)]

    def overlaps(self, pos: np.ndarray, rad: np.ndarray, gap: float) -> tuple[np.ndarray, np.ndarray]:
        """Pairs ``(k, a)``, ordered by ``k`` then ``a``: sphere ``k`` of (``pos``, ``rad``) within ``gap`` of this
        set's sphere ``a`` (centre distance, at least 1e-9 mm, < the radii + ``gap``)."""
        ks, As = [], []
        for q_idx in _radius_bins(rad):
            query = cKDTree(pos[q_idx], balanced_tree=False, compact_nodes=False)  # built each round: quick to build
            for o_idx, tree, o_max in self.bins:
                found = query.sparse_distance_matrix(tree, float(rad[q_idx].max()) + o_max + gap,
                                                     output_type="ndarray")
                k, a = q_idx[found["i"]], o_idx[found["j"]]
                keep = found["v"] < rad[k] + self.radii[a] + gap + 1e-6  # the exact test follows
                ks.append(k[keep])
                As.append(a[keep])
        k, a = np.concatenate(ks + [np.zeros(0, np.int64)]), np.concatenate(As + [np.zeros(0, np.int64)])
        dist = np.maximum(np.linalg.norm(pos[k] - self.centres[a], axis=1), 1e-9)
        over = dist < rad[k] + self.radii[a] + gap
        k, a = k[over], a[over]
        order = np.lexsort((a, k))
        return k[order], a[order]


def _overlap_push(pos: np.ndarray, rad: np.ndarray, other: _Spheres, along: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) push (mm) that takes each node sphere (``pos``, ``rad``) :data:`ARTERY_GAP_MM` clear of the ``other``
    spheres it overlaps: directly away from the centre of the one it overlaps most or, with ``along`` ((N, 3) unit
    vectors), along its own direction by the least distance that clears them all."""
    push = np.zeros_like(pos)
    k, a = other.overlaps(pos, rad, ARTERY_GAP_MM)
    if not len(k):
        return push
    d = pos[k] - other.centres[a]
    dist = np.maximum(np.linalg.norm(d, axis=1), 1e-9)
    clear = rad[k] + other.radii[a] + ARTERY_GAP_MM
    if along is None:  # away from the one it overlaps most
        size, way = clear - dist, d / dist[:, None]
    else:  # |d + t u| = clear, the larger root: the least move along u that clears them all
        du = np.sum(d * along[k], axis=1)
        size, way = -du + np.sqrt(du * du - dist * dist + clear * clear), along[k]
    order = np.lexsort((size, k))  # by node, the largest last
    last = np.r_[k[order][1:] != k[order][:-1], True]
    pick = order[last]
    push[k[pick]] = way[pick] * size[pick, None]
    return push


def _make_way(b: TreeBuilder, ids: list[int], n_arterial: int) -> None:
    """Move the vein nodes ``ids`` off the arteries (the builder's first ``n_arterial`` nodes), as a compliant vein
    gives way to an artery: each node's overlap (plus :data:`ARTERY_GAP_MM`) is pushed away from the arterial
    nodes it overlaps, the push smoothed along the vein (Gaussian, :data:`GIVE_WAY_MM`) and faded to nothing at
    both ends, which stay where they join (the jugular foramen, the virtual root, another vein), in rounds (at most
    50) that each clear as much of the deepest overlap away from the ends as moves no node by more than the deepest
    overlap, until none is left there. Near its ends (:data:`HELD_FADE`) the vein is held and does not react to
    overlaps."""
    arteries = _Spheres(np.array([b.position(i) for i in range(n_arterial)]),
                        np.array([b.radius(i) for i in range(n_arterial)]))
    pos = np.array([b.position(i) for i in ids])
    rad = np.array([b.radius(i) for i in ids])
    step = float(np.mean(np.linalg.norm(np.diff(pos, axis=0), axis=1)))
    fade = np.sin(np.pi * np.linspace(0.0, 1.0, len(ids)))[:, None] ** 0.5
    held = fade[:, 0] < HELD_FADE
    for _ in range(50):
        push = _overlap_push(pos, rad, arteries)
        push[held] = 0.0  # there the arteries give way
        need = np.linalg.norm(push, axis=1)
        if need.max() <= 1e-6:
            break
        smooth = ndimage.gaussian_filter1d(push, GIVE_WAY_MM / step, axis=0, mode="nearest") * fade
        got = np.linalg.norm(smooth, axis=1)
        free = np.where(got >= 0.05 * need, need, 0.0)  # not where its push is lost in the smoothing
        worst = int(np.argmax(free))
        if free[worst] <= 1e-6:
            break
        # the deepest overlap it can clear is cleared in this round, no node moved further than the deepest overlap
        pos += smooth * min(need[worst] / got[worst], need.max() / got.max())
    for i, p in zip(ids, pos):
        b.set_position(i, p)


def _arterial_sides(b: TreeBuilder, n_arterial: int) -> np.ndarray:
    """(n_arterial,) +1 for a node of a left artery (its branch's label ends in ``_L``), -1 for a right one (``_R``);
    a node of any other branch (unlabelled, or named without a side) takes its parent's side; the root's is 0."""
    side = np.zeros(n_arterial)
    for i in range(1, n_arterial):  # parents come before their children
        label = b.labels.get(b.branch_of(i))
        side[i] = 1.0 if label and label.endswith("_L") else -1.0 if label and label.endswith("_R") else side[b.parent(i)]
    return side


#: Points per edge at which the give-way checks the arteries' and the veins' tubes (their ends included).
EDGE_POINTS = 6


def _along_edges(end: np.ndarray, start: np.ndarray, end_r: np.ndarray, start_r: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (mm), radii (mm) and fractions of :data:`EDGE_POINTS` spheres along each edge ``start`` -> ``end``
    ((E, 3) each), the radius linear: the tube's swept spheres, fraction by fraction (point ``k`` is edge
    ``k % E``)."""
    t = np.linspace(0.0, 1.0, EDGE_POINTS)
    pts = start[None] * (1.0 - t[:, None, None]) + end[None] * t[:, None, None]
    r = start_r[None] * (1.0 - t[:, None]) + end_r[None] * t[:, None]
    return pts.reshape(-1, 3), r.reshape(-1), t


def _mean_by(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(N, K) mean of the nodes' ``values`` (N, K) over the nodes sharing each node's ``group`` id."""
    _, index = np.unique(group, return_inverse=True)
    sums = np.stack([np.bincount(index, values[:, k]) for k in range(values.shape[1])], axis=1)
    return (sums / np.bincount(index)[:, None])[index]


def _arteries_make_way(b: TreeBuilder, beneath: list[int], aside: list[int], n_arterial: int, centre: np.ndarray,
                       axes: np.ndarray, below: np.ndarray | None = None,
                       cerebellum: tuple[np.ndarray, np.ndarray] | None = None, off: Sequence[int] = ()) -> None:
    """Move the arteries (the builder's first ``n_arterial`` nodes; the root stays) off the vein nodes ``beneath``
    (:data:`SURFACE_VEINS`: the sinuses and the cortical veins) and ``aside`` (:data:`MIDLINE_VEINS`), as the tissue
    around them gives way to the dura: an arterial node whose tube overlaps a vein's (plus :data:`ARTERY_GAP_MM`; both
    checked at :data:`EDGE_POINTS` points along each edge: a node-only check let 3 mm edges pass through a cortical vein
    between nodes, 0.39 mm deep in seed 6) is pushed along the brain ellipsoid's normal (``centre``, ``axes``) off the
    first, inwards where its branch lies inside the dura (beneath the sinus or the cortical vein) and outwards where it
    lies outside (the scalp's and the neck's arteries); an artery ``below`` the tentorium (an (``n_arterial``,) mask)
    inwards along the normal of the ``cerebellum``'s ellipsoid (centre, semi-axes) instead, into the posterior fossa,
    away from the sinuses and the veins on the tentorium around it; and along the patient's x axis off the second, into
    its own hemisphere (:func:`_arterial_sides`; a midline artery's: the side its branch lies on); every arterial node
    within 3 :data:`GIVE_WAY_MM` of a pushed one along the tree moves by the push that moves it most once
    Gaussian-weighted by that distance (:data:`GIVE_WAY_MM`), so that the artery bends aside smoothly and each pushed
    node moves by at least its own push; in rounds (at most 50) until no overlap is left. A labelled branch and the
    unlabelled ones grown from it lie inside or outside the dura together, as their nodes do on average, and a branch on
    a side of the midline as its own mean node position does. An arterial node overlapping a vein node of ``off`` (a
    giving vein where it could not give way) is pushed directly away from it. No push takes a sided artery's node nearer
    the midline than :data:`MIDLINE_GAP_MM` (or than it was, if nearer): the inward normal under the sagittal sinus
    leans towards the midline."""
    pos = np.array([b.position(i) for i in range(n_arterial)])
    rad = np.array([b.radius(i) for i in range(n_arterial)])
    children = np.arange(1, n_arterial)
    parents = np.array([b.parent(i) for i in children])
    along_tree = sparse.csr_matrix((np.linalg.norm(pos[children] - pos[parents], axis=1), (children, parents)),
                                   shape=(n_arterial, n_arterial))
    branch = np.array([b.branch_of(i) for i in range(n_arterial)])
    # a labelled branch and the unlabelled (grown) ones below it lie inside or outside the dura together: taken
    # apart, a face tree's branch reaching under the brain was pushed inwards and its parent outwards, in turn
    group = b.labelled_branches()[:n_arterial]
    group = np.where(group >= 0, group, branch)
    # by the mean of the nodes' own levels: the mean position of a long branch along the curved dura lies well inside it
    level = np.linalg.norm((pos - centre) / (axes + SINUS_OFFSET_MM), axis=1)
    inside = _mean_by(group, level[:, None])[:, 0] < 1.0
    side = _arterial_sides(b, n_arterial)
    lateral = np.zeros_like(pos)
    lateral[:, 0] = np.where(side != 0, side, np.where(_mean_by(branch, pos)[:, 0] >= centre[0], 1.0, -1.0))
    # the least distance a node may keep from the midline on its own side: what it had, up to the falx's gap
    sided = side != 0
    least_off = np.minimum(side * (pos[:, 0] - centre[0]), MIDLINE_GAP_MM)
    parts = [(part, way) for part, way in ((beneath, "beneath"), (aside, "aside"), (off, "off")) if len(part)]
    veins = [_Spheres(*_along_edges(np.array([b.position(i) for i in part]),
                                    np.array([b.position(b.parent(i)) for i in part]),
                                    np.array([b.radius(i) for i in part]),
                                    np.array([b.radius(b.parent(i)) for i in part]))[:2])
             for part, _ in parts]
    for _ in range(50):
        normal = (pos - centre) / axes**2
        inward = normal * np.where(inside, -1.0, 1.0)[:, None] / np.linalg.norm(normal, axis=1, keepdims=True)
        if below is not None and below.any():
            fossa = (pos[below] - cerebellum[0]) / cerebellum[1] ** 2
            inward[below] = -fossa / np.linalg.norm(fossa, axis=1, keepdims=True)
        along = {"beneath": inward, "aside": lateral, "off": None}
        # the tubes, not only the node spheres: points along each edge, each pushing both its ends
        pts, r, t = _along_edges(pos[children], pos[parents], rad[children], rad[parents])
        edge = np.tile(np.arange(len(children)), len(t))
        push = np.zeros_like(pos)
        for (_, way), v in zip(parts, veins):
            sample_push = _overlap_push(pts, r, v, None if along[way] is None else along[way][children[edge]])
            size = np.linalg.norm(sample_push, axis=1)
            hit = np.nonzero(size > 0)[0]
            if not len(hit):
                continue
            # each pushing sample moves both ends of its edge; a node takes the largest push (the first of equals)
            nodes = np.stack([children[edge[hit]], parents[edge[hit]]], axis=1).ravel()
            sizes, order = np.repeat(size[hit], 2), np.arange(2 * len(hit))
            rank = np.lexsort((-order, sizes, nodes))
            best = rank[np.r_[nodes[rank][1:] != nodes[rank][:-1], True]]
            wins = sizes[best] > np.linalg.norm(push[nodes[best]], axis=1)
            push[nodes[best[wins]]] = sample_push[hit[best[wins] // 2]]
        push[0] = 0.0
        need = np.linalg.norm(push, axis=1)
        if need.max() <= ARTERIES_GIVE_WAY_TOLERANCE_MM:
            break
        pushed = np.nonzero(need > 1e-9)[0]
        dist = csgraph.dijkstra(along_tree, directed=False, indices=pushed, limit=3.0 * GIVE_WAY_MM)
        w = np.exp(-0.5 * (dist / GIVE_WAY_MM) ** 2)  # 0 beyond the limit (inf)
        best = np.argmax(w * need[pushed, None], axis=0)  # per node, the push that moves it most
        move = w[best, np.arange(n_arterial), None] * push[pushed[best]]
        move[0] = 0.0
        pos += move
        # a push inwards under a sinus tilts towards the midline: no artery is pushed across the falx's gap
        across = sided & (side * (pos[:, 0] - centre[0]) < least_off)
        pos[across, 0] = centre[0] + side[across] * least_off[across]
    for i in range(1, n_arterial):
        b.set_position(i, pos[i])


def _lay_segment(b: TreeBuilder, name: str, parent: int, points: list[np.ndarray], heading: np.ndarray | None,
                 diameters: tuple[float, float], step_mm: float, tortuosity: float,
                 rng: np.random.Generator) -> list[int]:
    """Nodes of one named segment from ``parent`` through ``points[1:]``, its diameter linear from start to end, bent
    by ``tortuosity`` (by :data:`CONFINED_BEND` of it for the :data:`CONFINED_VEINS`, not at all for the
    :data:`FALX_SINUSES`)."""
    bend = tortuosity * (CONFINED_BEND if name.startswith(CONFINED_VEINS) else 1.0)
    nodes = smooth_curve([b.position(parent)] + points[1:], heading, step_mm, bend, rng)
    if name.startswith(FALX_SINUSES):  # its bend is drawn, so that the segments after it draw as before, and not laid;
        # it leaves a confluence (the torcula) along the midline, not along the transverse sinus arriving there
        nodes = smooth_curve([b.position(parent)] + points[1:], None, step_mm, 0.0, rng)
    d0, d1 = diameters
    bid = b.new_branch(1, name)
    ids, node = [], parent
    for k, q in enumerate(nodes):
        node = b.add_node(q, 0.5 * (d0 + (d1 - d0) * (k + 1) / len(nodes)), node, bid)
        ids.append(node)
    return ids


def add_cerebral_veins(b: TreeBuilder, parent_node: int, centre: np.ndarray, axes: np.ndarray, scale: float,
                       radius_jitter: float, tortuosity: float, step_mm: float, iterations: int,
                       min_radius_mm: float, rng: np.random.Generator,
                       infratentorial: np.ndarray | None = None,
                       cerebellum: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[list[int], list[int]]:
    """Append the venous template to ``b``, hung on a virtual connector from ``parent_node``.

    Parameters
    ----------
    b : TreeBuilder
        The arterial template's builder.
    parent_node : int
        Node the virtual connector leaves from (the arterial root).
    centre, axes : (3,) ndarray
        Brain ellipsoid of the template (mm, already scaled).
    scale : float
        Template size factor.
    radius_jitter : float
        Log-normal sigma of per-segment diameters.
    tortuosity : float
        Relative bend of the named segments (:func:`~vessel_models.courses.smooth_curve`).
    step_mm : float
        Node spacing along the named segments.
    iterations : int
        L-system iterations of each cortical vein tree.
    min_radius_mm : float
        Smallest cortical vein radius.
    rng : numpy.random.Generator
    infratentorial : (N,) bool ndarray, optional
        Which of the arterial nodes (the builder's ``N`` so far) lie below the tentorium (the cerebellar arteries): they
        give way to the veins into the posterior fossa, towards the ``cerebellum``'s centre (the brain ellipsoid's
        normal there led out of it: an anterior inferior cerebellar artery was pushed 36 mm down along the sigmoid
        sinus).
    cerebellum : (centre, semi-axes), optional
        The cerebellum's ellipsoid (mm, already scaled): over it the cortical veins run on the tentorium, their depth
        under the brain over :data:`~vessel_models.courses.TENTORIUM_MM` (:func:`~vessel_models.courses.lift_over`).

    Returns
    -------
    venous_branches : list of int
        Branch ids of the venous part (the virtual connector included).
    inflow_nodes : list of int
        Capillary ends: the leaves of the cortical vein trees.
    """
    if infratentorial is not None and infratentorial.any() and cerebellum is None:
        raise ValueError("add_cerebral_veins: infratentorial arteries need the cerebellum's ellipsoid")
    n_arterial = b.n_nodes  # the arteries are laid first
    segs = _segments(centre, axes, scale)
    diam = {k: tuple(d * scale * float(np.exp(rng.normal(0.0, radius_jitter))) for d in v)
            for k, v in VEIN_DIAMETERS_MM.items()}
    virt = b.new_branch(0, "virtual")
    start = b.position(parent_node)  # leaves the arterial root at once: no cone of iodine along the connector
    near = b.add_node(start + 0.01 * (segs["IJV_R"][0] - start), VIRTUAL_RADIUS_MM, parent_node, virt)
    root = b.add_node(segs["IJV_R"][0], VIRTUAL_RADIUS_MM, near, virt)
    end_node: dict[str, int] = {}
    heading: dict[str, np.ndarray] = {}
    order = ["IJV_R", "SS_R", "TS_R", "SSS_post", "SSS_ant", "TS_L", "SS_L", "IJV_L"]
    start_of = {"IJV_R": None, "SS_R": "IJV_R", "TS_R": "SS_R", "SSS_post": "TS_R", "SSS_ant": "SSS_post",
                "TS_L": "TS_R", "SS_L": "TS_L", "IJV_L": "SS_L"}
    sss_nodes: list[int] = []
    ts_nodes: dict[str, list[int]] = {}
    giving: list[list[int]] = []  # the nodes of the veins that give way to the arteries, laid last
    beneath: list[int] = []  # the nodes of the veins the arteries give way to, by passing beneath
    aside: list[int] = []  # and by moving aside
    for name in order:
        parent = root if start_of[name] is None else end_node[start_of[name]]
        ids = _lay_segment(b, name, parent, segs[name], heading.get(start_of[name]), diam[name], step_mm, tortuosity,
                           rng)
        end_node[name] = ids[-1]
        heading[name] = b.position(ids[-1]) - b.position(ids[-2])
        if name.startswith("SSS"):
            sss_nodes += ids
        if name.startswith("TS"):
            ts_nodes[name[-1]] = ids
        if name.startswith(GIVING_WAY):
            giving.append(ids)
        if name.startswith(SURFACE_VEINS):
            beneath += ids

    lp = LSystemParams(iterations=iterations, length_diameter_ratio=8.0, tortuosity_deg=35.0,
                       min_radius_mm=min_radius_mm, step_mm=step_mm, root_diameter_mm=2.5,
                       stop_probability=0.0, asymmetry_min=0.6)
    trunks: list[tuple[str, int, np.ndarray]] = []
    picks = np.linspace(0.12, 0.88, CORTICAL_VEINS_PER_SIDE)
    for s, sx in (("L", 1.0), ("R", -1.0)):
        for k, frac in enumerate(picks):
            n = sss_nodes[int(frac * (len(sss_nodes) - 1))]
            trunks.append((f"CorV{k + 1}_{s}", n, np.array([sx, 0.0, -0.6])))
        ts = ts_nodes[s]
        trunks.append((f"Labbe_{s}", ts[len(ts) // 2 + len(ts) // 4], np.array([0.3 * sx, -1.0, 0.5])))
    inflow: list[int] = []
    for label, n, direction in trunks:
        normal = ellipsoid_normal(b.position(n), centre, axes)
        along = direction - normal * float(direction @ normal)
        first = b.n_nodes
        key = "Labbe" if label.startswith("Labbe") else "CorV"
        grow_lsystem(b, n, along / np.linalg.norm(along), lp, rng, root_diameter_mm=diam[key][0], generation_offset=2)
        b.labels[b.branch_of(first)] = label
        side = 1.0 if label.endswith("_L") else -1.0
        lay_on_surface(b, first, n, "cortex", side, centre, axes, CORTICAL_VEIN_DEPTH_MM * scale, 10.0 * scale, scale,
                       rng.spawn(1)[0])
        if cerebellum is not None:
            lift_over(b, first, *cerebellum, (TENTORIUM_MM + CORTICAL_VEIN_DEPTH_MM) * scale)
        beneath += range(first, b.n_nodes)
        has_child = {b.parent(i) for i in range(first, b.n_nodes)}
        inflow += [i for i in range(first, b.n_nodes) if i not in has_child]

    # the deep veins, drawn last so that the sinuses and cortical veins above are those of a tree without them;
    # they fill from their far ends (the deep territories' capillaries) towards the straight sinus
    deep_diam = {k: tuple(d * scale * float(np.exp(rng.normal(0.0, radius_jitter))) for d in v)
                 for k, v in DEEP_VEIN_DIAMETERS_MM.items()}
    torcula = end_node["TS_R"]
    deep = _deep_segments(centre, b.position(torcula), scale)
    deep_parent = {"StS": torcula, "VG": "StS", "ISS": "StS", "ICV_L": "VG", "ICV_R": "VG", "BVR_L": "VG",
                   "BVR_R": "VG", "TSV_L": "ICV_L", "TSV_R": "ICV_R", "SepV_L": "ICV_L", "SepV_R": "ICV_R"}
    for name, parent in deep_parent.items():
        start = parent if isinstance(parent, int) else end_node[parent]
        ids = _lay_segment(b, name, start, deep[name], None, deep_diam[name.split("_")[0]], step_mm, tortuosity, rng)
        end_node[name] = ids[-1]
        if name not in deep_parent.values():  # a far end, where the deep territories' capillaries drain
            inflow.append(ids[-1])
        if name.startswith(GIVING_WAY):
            giving.append(ids)
        if name.startswith(MIDLINE_VEINS):
            aside += ids
    # the arteries first: the giving veins then make way for them where they end up
    _arteries_make_way(b, beneath, aside, n_arterial, centre, axes, infratentorial, cerebellum)
    for ids in giving:
        _make_way(b, ids, n_arterial)
    # where a giving vein could not (its held ends, or arteries on both of its sides), the arteries give way to it
    _arteries_make_way(b, beneath, aside, n_arterial, centre, axes, infratentorial, cerebellum,
                       off=[i for ids in giving for i in ids])
    return sorted({b.branch_of(i) for i in range(root, b.n_nodes)}), inflow
