"""Stochastic, parametric L-system vessel trees in the V-System tradition (own implementation).

Grammar (modules are parametric; ``d`` diameter in mm, ``L`` length in mm)::

    axiom:  A(d0)
    A(d) -> F(d, L) / (phi) [ + (t1) A(d1) ] [ - (t2) A(d2) ]     with probability 1 - p_stop
    A(d) -> F(d, L)                                                  with probability p_stop,
                                                                     or when d2 / 2 < min radius
    after the last iteration every remaining A(d) -> F(d, L)

* ``L = eps * d * (1 + U(-j, j))`` (length/diameter ratio ``eps``);
* Murray's law with exponent ``k``: ``d^k = d1^k + d2^k``, asymmetry ``a = d2/d1 ~ U(a_min, a_max)``;
* Zamir's optimal angles from the force triangle with weights ``r^2``:
  ``cos t1 = (r0^4 + r1^4 - r2^4) / (2 r0^2 r1^2)`` (for ``k = 3`` and ``r1 = 1`` this is
  ``((1+a^3)^(4/3) + 1 - a^4) / (2 (1+a^3)^(2/3))``; the angles are those of the asymmetry ``a``
  with ``k = 3`` whatever the diameter exponent, whose force triangle need not close), plus
  Gaussian tilt noise;
* roll ``phi`` of the branching plane: 90 degrees plus Gaussian roll noise;
* the turtle draws ``F`` as ``n`` sub-segments along a smooth random curve with curvature and torsion
  whose RMS tangent deviation is ``tortuosity_deg`` (see :func:`_draw_segment`; docs/vessels.md).

Distances in mm, angles in degrees at the interface.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np

from vessel_models.tree import TreeBuilder, VesselInputError, VesselTree, check_finite_params, with_overrides

__all__ = [
    "LSystemParams",
    "zamir_angles",
    "murray_daughters",
    "expand",
    "format_modules",
    "grow_lsystem",
    "generate_lsystem",
    "PUBLISHED_GRID_AXES",
    "GRAMMAR_UNIT_MM",
    "grammar_to_params",
    "design_depth",
    "published_grid",
    "rotate",
    "perpendicular",
    "cross3",
]


# ---------------------------------------------------------------------- geometry helpers
def cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross`` of two 3-vectors, the same floats, without its general-shape overhead (a tenth of the time:
    the growers and the surface laying take hundreds of thousands)."""
    a0, a1, a2 = float(a[0]), float(a[1]), float(a[2])
    b0, b1, b2 = float(b[0]), float(b[1]), float(b[2])
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def rotate(v: np.ndarray, axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotate vector ``v`` about unit ``axis`` by ``angle_rad`` (Rodrigues)."""
    axis = axis / np.linalg.norm(axis)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return v * c + cross3(axis, v) * s + axis * float(np.dot(axis, v)) * (1.0 - c)


def perpendicular(v: np.ndarray) -> np.ndarray:
    """A deterministic unit vector perpendicular to ``v``."""
    v = v / np.linalg.norm(v)
    ref = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    p = np.cross(v, ref)
    return p / np.linalg.norm(p)


def _unit(v: Sequence[float], name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.shape != (3,) or not np.all(np.isfinite(a)) or np.linalg.norm(a) == 0:
        raise VesselInputError(f"{name}: expected a non-zero 3-vector, got {v!r}")
    return a / np.linalg.norm(a)


# ---------------------------------------------------------------------- physiology
def murray_daughters(d0: float, asymmetry: float, exponent: float = 3.0) -> tuple[float, float]:
    """Daughter diameters from Murray's law ``d0^k = d1^k + d2^k`` with ``d2 = a d1``.

    Parameters
    ----------
    d0 : float
        Parent diameter (mm).
    asymmetry : float
        ``a = d2 / d1`` in ``(0, 1]``.
    exponent : float
        Murray exponent ``k`` (3 = Murray's original).

    Returns
    -------
    (d1, d2) : tuple of float
        Larger and smaller daughter diameters (mm).
    """
    if not 0 < asymmetry <= 1:
        raise VesselInputError(f"asymmetry must be in (0, 1], got {asymmetry}")
    if exponent <= 0:
        raise VesselInputError(f"murray_exponent must be > 0, got {exponent}")
    d1 = d0 / (1.0 + asymmetry**exponent) ** (1.0 / exponent)
    return d1, asymmetry * d1


def zamir_angles(asymmetry: float, exponent: float = 3.0) -> tuple[float, float]:
    """Optimal branching angles (Zamir; minimum lumen volume) for ``a = d2/d1``.

    Uses the force triangle ``r0^2 e0 = r1^2 e1 + r2^2 e2`` with Murray radii
    ``r1 = 1``, ``r2 = a``, ``r0 = (1 + a^k)^(1/k)``.

    Parameters
    ----------
    asymmetry : float
        ``a = d2 / d1`` in ``(0, 1]``.
    exponent : float
        Murray exponent ``k``.

    Returns
    -------
    (theta1, theta2) : tuple of float
        Angles (radians) between the parent axis and the larger / smaller daughter.
    """
    a = float(asymmetry)
    if not 0 < a <= 1:
        raise VesselInputError(f"asymmetry must be in (0, 1], got {asymmetry}")
    r0 = (1.0 + a**exponent) ** (1.0 / exponent)
    w0, w1, w2 = r0**2, 1.0, a**2
    c1 = (w0**2 + w1**2 - w2**2) / (2.0 * w0 * w1)
    c2 = (w0**2 + w2**2 - w1**2) / (2.0 * w0 * w2)
    return math.acos(max(-1.0, min(1.0, c1))), math.acos(max(-1.0, min(1.0, c2)))


# ---------------------------------------------------------------------- parameters
#: Most sub-segments (steps of ``step_mm``) a segment may take (the root segment is the longest).
MAX_SEGMENT_STEPS = 10_000


@dataclass(frozen=True)
class LSystemParams:
    """Parameters of the stochastic L-system (lengths in mm, angles in degrees).

    Attributes
    ----------
    root_diameter_mm : float
        Diameter of the root segment (cerebral scale: 2-4 mm).
    iterations : int
        Rewriting iterations (maximum branching generation).
    length_diameter_ratio : float
        ``eps``: segment length = ``eps * d``.
    length_jitter : float
        Relative uniform jitter of segment lengths.
    murray_exponent : float
        Murray exponent ``k`` (3 by default).
    asymmetry_min, asymmetry_max : float
        Range of ``a = d2/d1`` drawn uniformly per bifurcation.
    stop_probability : float
        Probability that an apex terminates instead of bifurcating.
    tilt_sd_deg : float
        Gaussian noise added to each Zamir angle.
    roll_sd_deg : float
        Gaussian noise on the 90-degree roll of each branching plane.
    tortuosity_deg : float
        RMS angle between a segment's tangent and its starting heading (smooth curvature and
        torsion, :func:`_draw_segment`); the distance metric (path / chord) of a branch grows
        with it: median 1.0 / 1.05 / 1.09 / 1.14 at 0 / 20 / 30 / 40 degrees (docs/vessels.md).
    step_mm : float
        Target sub-segment length (each segment has at least 3 sub-segments).
    min_radius_mm : float
        No daughter thinner than this is created (the apex terminates instead).
    stenosis_probability : float
        Per-branch probability of a stenosis (smooth narrowing of interior nodes).
    stenosis_degree_min, stenosis_degree_max : float
        Range of diameter reduction (fraction) of a stenosis.
    aneurysm_probability : float
        Per-branch probability of an aneurysm.
    aneurysm_kind : str
        ``"saccular"`` (side bleb branch labelled ``aneurysm``) or ``"fusiform"`` (bulge).
    aneurysm_size_min, aneurysm_size_max : float
        Aneurysm radius as a multiple of the parent vessel radius.
    origin_mm : tuple of float
        Root node position.
    direction : tuple of float
        Initial heading.
    """

    root_diameter_mm: float = 3.0
    iterations: int = 5
    length_diameter_ratio: float = 6.0
    length_jitter: float = 0.25
    murray_exponent: float = 3.0
    asymmetry_min: float = 0.5
    asymmetry_max: float = 1.0
    stop_probability: float = 0.05
    tilt_sd_deg: float = 5.0
    roll_sd_deg: float = 25.0
    tortuosity_deg: float = 45.0
    step_mm: float = 2.5
    min_radius_mm: float = 0.2
    stenosis_probability: float = 0.0
    stenosis_degree_min: float = 0.3
    stenosis_degree_max: float = 0.7
    aneurysm_probability: float = 0.0
    aneurysm_kind: str = "saccular"
    aneurysm_size_min: float = 1.5
    aneurysm_size_max: float = 3.0
    origin_mm: tuple = (0.0, 0.0, 0.0)
    direction: tuple = (0.0, 0.0, 1.0)

    def validate(self) -> "LSystemParams":
        """Raise :class:`VesselInputError` naming the first bad field; return self."""
        check_finite_params(self, "lsystem")
        checks = [
            ("root_diameter_mm", self.root_diameter_mm > 0),
            ("iterations", 0 <= self.iterations <= 14),
            ("length_diameter_ratio", self.length_diameter_ratio > 0),
            ("length_jitter", 0 <= self.length_jitter < 1),
            ("murray_exponent", self.murray_exponent > 0),
            ("asymmetry_min", 0 < self.asymmetry_min <= self.asymmetry_max),
            ("asymmetry_max", self.asymmetry_max <= 1),
            ("stop_probability", 0 <= self.stop_probability <= 1),
            ("tilt_sd_deg", self.tilt_sd_deg >= 0),
            ("roll_sd_deg", self.roll_sd_deg >= 0),
            ("tortuosity_deg", 0 <= self.tortuosity_deg < 90),
            ("step_mm", self.step_mm > 0),
            ("min_radius_mm", self.min_radius_mm > 0),
            ("stenosis_probability", 0 <= self.stenosis_probability <= 1),
            ("stenosis_degree_min", 0 <= self.stenosis_degree_min <= self.stenosis_degree_max),
            ("stenosis_degree_max", self.stenosis_degree_max < 1),
            ("aneurysm_probability", 0 <= self.aneurysm_probability <= 1),
            ("aneurysm_kind", self.aneurysm_kind in ("saccular", "fusiform")),
            ("aneurysm_size_min", 1 < self.aneurysm_size_min <= self.aneurysm_size_max),
        ]
        for name, ok in checks:
            if not ok:
                raise VesselInputError(f"lsystem parameter {name}={getattr(self, name)!r} is out of range")
        if self.root_diameter_mm / 2 < self.min_radius_mm:
            raise VesselInputError(
                f"lsystem parameter root_diameter_mm={self.root_diameter_mm} is below 2 * min_radius_mm"
            )
        root_length = self.length_diameter_ratio * self.root_diameter_mm * (1 + self.length_jitter)
        if root_length / self.step_mm > MAX_SEGMENT_STEPS:  # absurd sizes: one line, not a failed allocation
            raise VesselInputError(
                f"lsystem parameters root_diameter_mm={self.root_diameter_mm}, length_diameter_ratio="
                f"{self.length_diameter_ratio}, step_mm={self.step_mm}: a root segment of up to {root_length:.4g} mm "
                f"would take more than {MAX_SEGMENT_STEPS} steps"
            )
        o = np.asarray(self.origin_mm, dtype=np.float64).reshape(-1)
        if o.shape != (3,) or not np.all(np.isfinite(o)):
            raise VesselInputError(f"lsystem parameter origin_mm={self.origin_mm!r} must be 3 finite numbers")
        _unit(self.direction, "direction")
        return self


# ---------------------------------------------------------------------- rewriting
Module = tuple  # ("A", d) | ("F", d, L) | ("/", deg) | ("+", deg) | ("-", deg) | ("[",) | ("]",)


def _segment(d: float, p: LSystemParams, rng: np.random.Generator) -> Module:
    jitter = rng.uniform(-p.length_jitter, p.length_jitter) if p.length_jitter > 0 else 0.0
    return ("F", d, p.length_diameter_ratio * d * (1.0 + jitter))


def expand(params: LSystemParams, rng: np.random.Generator, root_diameter_mm: float | None = None) -> list[Module]:
    """Run the stochastic rewriting for ``params.iterations`` iterations.

    Parameters
    ----------
    params : LSystemParams
        Grammar parameters.
    rng : numpy.random.Generator
        Source of randomness (consumed in a fixed order).
    root_diameter_mm : float, optional
        Axiom diameter; defaults to ``params.root_diameter_mm``.

    Returns
    -------
    list of tuple
        The final module string (every apex already turned into a terminal ``F``).
    """
    d0 = params.root_diameter_mm if root_diameter_mm is None else root_diameter_mm
    word: list[Module] = [("A", float(d0))]
    k = params.murray_exponent
    for _ in range(params.iterations):
        nxt: list[Module] = []
        for m in word:
            if m[0] != "A":
                nxt.append(m)
                continue
            d = m[1]
            stop = rng.random() < params.stop_probability
            a = rng.uniform(params.asymmetry_min, params.asymmetry_max)
            d1, d2 = murray_daughters(d, a, k)
            if stop or d2 / 2.0 < params.min_radius_mm:
                nxt.append(_segment(d, params, rng))
                continue
            t1, t2 = zamir_angles(a, 3.0)  # optimal angles of the asymmetry (k=3 force triangle)
            t1 = math.degrees(t1) + rng.normal(0.0, params.tilt_sd_deg) if params.tilt_sd_deg else math.degrees(t1)
            t2 = math.degrees(t2) + rng.normal(0.0, params.tilt_sd_deg) if params.tilt_sd_deg else math.degrees(t2)
            roll = 90.0 + (rng.normal(0.0, params.roll_sd_deg) if params.roll_sd_deg else 0.0)
            nxt += [
                _segment(d, params, rng),
                ("/", roll),
                ("[",), ("+", max(t1, 0.0)), ("A", d1), ("]",),
                ("[",), ("-", max(t2, 0.0)), ("A", d2), ("]",),
            ]
        word = nxt
    return [_segment(m[1], params, rng) if m[0] == "A" else m for m in word]


def format_modules(word: Sequence[Module]) -> str:
    """Human-readable L-system string, e.g. ``F(3.00,18.2)/(94.1)[+(37.5)F(2.38,14.3)]...``."""
    out = []
    for m in word:
        if m[0] in "[]":
            out.append(m[0])
        elif m[0] == "F":
            out.append(f"F({m[1]:.2f},{m[2]:.1f})")
        elif m[0] == "A":
            out.append(f"A({m[1]:.2f})")
        else:
            out.append(f"{m[0]}({m[1]:.1f})")
    return "".join(out)


# ---------------------------------------------------------------------- interpretation
def _minimal_rotation(v: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotate ``v`` by the smallest rotation taking unit ``a`` onto unit ``b`` (parallel transport)."""
    axis = cross3(a, b)
    s = float(np.linalg.norm(axis))
    if s < 1e-12:
        return v
    return rotate(v, axis / s, math.atan2(s, float(np.dot(a, b))))


def _draw_segment(
    b: TreeBuilder,
    parent: int,
    pos: np.ndarray,
    heading: np.ndarray,
    up: np.ndarray,
    d: float,
    length: float,
    branch: int,
    p: LSystemParams,
    rng: np.random.Generator,
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Draw ``F(d, length)`` as a smooth curve of ``n`` sub-segments.

    The tangent at arc fraction ``s`` is ``h + tan(T) (u(s) n1 + v(s) n2)`` normalised, where ``h`` is
    the heading, ``n1, n2`` span the normal plane, ``T = tortuosity_deg`` and ``u, v`` are independent
    smooth random functions (two sine modes each of 0.5-1.5 cycles per segment with random phases,
    shifted so that ``u(0) = v(0) = 0``; ``u^2 + v^2`` has unit mean before the shift), so ``T`` is
    about the RMS angle between the tangent and the heading. The curve leaves its start
    along ``h`` (no kink at a bifurcation), bends with continuous curvature and, since ``u`` and ``v``
    differ, twists out of plane (torsion). Expected distance metric about ``1 / E[cos(angle to h)]``.
    """
    n = max(3, int(math.ceil(length / p.step_mm)))
    ls = length / n
    nodes = []
    if p.tortuosity_deg > 0:
        s = np.arange(n) / n
        freq = rng.uniform(0.5, 1.5, size=(2, 2))
        phase = rng.uniform(0.0, 2.0 * math.pi, size=(2, 2))
        modes = np.sin(2.0 * math.pi * freq[:, :, None] * s + phase[:, :, None]) - np.sin(phase)[:, :, None]
        dev = math.tan(math.radians(p.tortuosity_deg)) / math.sqrt(2.0) * modes.sum(axis=1)  # (2, n)
        n1 = up
        n2 = np.cross(heading, up)
        tangents = heading[None, :] + dev[0][:, None] * n1[None, :] + dev[1][:, None] * n2[None, :]
        tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    else:
        tangents = np.repeat(heading[None, :], n, axis=0)
    for t in tangents:
        pos = pos + t * ls
        parent = b.add_node(pos, d / 2.0, parent, branch)
        nodes.append(parent)
    end = tangents[-1]
    up = _minimal_rotation(up, heading, end)
    up = up - end * float(np.dot(up, end))
    return parent, pos, end, up / np.linalg.norm(up), nodes


def grow_lsystem(
    builder: TreeBuilder,
    parent_node: int,
    direction: Sequence[float],
    params: LSystemParams,
    rng: np.random.Generator,
    root_diameter_mm: float | None = None,
    generation_offset: int = 0,
    up: Sequence[float] | None = None,
) -> list[int]:
    """Interpret an expanded L-system with a 3D turtle, appending nodes to ``builder``.

    Parameters
    ----------
    builder : TreeBuilder
        Target; ``parent_node`` must already exist (use -1 to create the root node at
        ``params.origin_mm``).
    parent_node : int
        Node the first segment starts from.
    direction : sequence of float
        Initial heading (normalised internally).
    params : LSystemParams
        Grammar and pathology parameters.
    rng : numpy.random.Generator
        Randomness.
    root_diameter_mm : float, optional
        Diameter of the first segment (default ``params.root_diameter_mm``).
    generation_offset : int
        Generation of the first segment's branch.
    up : sequence of float, optional
        Initial turtle "up" vector (perpendicular to the heading).

    Returns
    -------
    list of int
        Branch ids created.
    """
    d0 = params.root_diameter_mm if root_diameter_mm is None else float(root_diameter_mm)
    heading = _unit(direction, "direction")
    upv = perpendicular(heading) if up is None else _unit(up, "up")
    upv = upv - heading * float(np.dot(upv, heading))
    if np.linalg.norm(upv) < 1e-9:
        upv = perpendicular(heading)
    upv /= np.linalg.norm(upv)
    if parent_node < 0:
        root_branch = builder.new_branch(generation_offset)
        parent_node = builder.add_node(params.origin_mm, d0 / 2.0, -1, root_branch)
        first_branch_reuse: int | None = root_branch
    else:
        first_branch_reuse = None
    word = expand(params, rng, d0)
    pos = builder.position(parent_node)
    state = (parent_node, pos, heading, upv, generation_offset)
    stack: list[tuple] = []
    created: list[int] = []
    branch_nodes: dict[int, list[int]] = {}
    for m in word:
        node, pos, heading, upv, gen = state
        op = m[0]
        if op == "F":
            if first_branch_reuse is not None:
                bid, first_branch_reuse = first_branch_reuse, None
            else:
                bid = builder.new_branch(gen)
            created.append(bid)
            node, pos, heading, upv, nodes = _draw_segment(builder, node, pos, heading, upv, m[1], m[2], bid, params, rng)
            branch_nodes[bid] = nodes
            state = (node, pos, heading, upv, gen)
        elif op == "/":
            upv = rotate(upv, heading, math.radians(m[1]))
            state = (node, pos, heading, upv, gen)
        elif op in "+-":
            ang = math.radians(m[1]) * (1.0 if op == "+" else -1.0)
            heading = rotate(heading, upv, ang)
            heading /= np.linalg.norm(heading)
            state = (node, pos, heading, upv, gen)
        elif op == "[":
            stack.append(state)
            state = (node, pos, heading, upv, gen + 1)
        elif op == "]":
            state = stack.pop()
    _add_pathologies(builder, created, branch_nodes, params, rng)
    return created


def _add_pathologies(
    b: TreeBuilder, branches: list[int], branch_nodes: dict[int, list[int]], p: LSystemParams, rng: np.random.Generator
) -> None:
    if p.stenosis_probability <= 0 and p.aneurysm_probability <= 0:
        return
    stenoses, aneurysms = [], []
    for bid in branches:
        nodes = branch_nodes[bid]
        interior = nodes[1:-1]
        if len(interior) < 2:
            continue
        if p.stenosis_probability > 0 and rng.random() < p.stenosis_probability:
            degree = rng.uniform(p.stenosis_degree_min, p.stenosis_degree_max)
            centre = rng.uniform(0.3, 0.7) * (len(interior) - 1)
            half = max(1.0, 0.35 * len(interior))
            for j, i in enumerate(interior):
                x = (j - centre) / half
                if abs(x) < 1:
                    factor = 1.0 - degree * 0.5 * (1.0 + math.cos(math.pi * x))
                    b.set_radius(i, max(b.radius(i) * factor, 1e-3))
            stenoses.append({"branch_id": bid, "degree": float(degree)})
        if p.aneurysm_probability > 0 and rng.random() < p.aneurysm_probability:
            size = rng.uniform(p.aneurysm_size_min, p.aneurysm_size_max)
            j = int(rng.integers(0, len(interior)))
            at = interior[j]
            r_v = b.radius(at)
            if p.aneurysm_kind == "fusiform":
                for jj, i in enumerate(interior):
                    x = (jj - j) / max(1.0, 0.3 * len(interior))
                    if abs(x) < 1:
                        b.set_radius(i, b.radius(i) * (1.0 + (size - 1.0) * 0.5 * (1.0 + math.cos(math.pi * x))))
                aneurysms.append({"branch_id": bid, "kind": "fusiform", "node": at, "size": float(size)})
            else:
                prev = b.position(interior[j - 1] if j > 0 else nodes[0])
                axis = b.position(at) - prev
                side = rotate(perpendicular(axis), axis, rng.uniform(0, 2 * math.pi))
                dome_r = size * r_v
                abid = b.new_branch(b.branch_generation(bid) + 1, label="aneurysm")
                neck = b.add_node(b.position(at) + side * r_v, 0.6 * r_v, at, abid)
                dome = b.add_node(b.position(at) + side * (r_v + dome_r), dome_r, neck, abid)
                aneurysms.append({"branch_id": abid, "kind": "saccular", "node": dome, "size": float(size)})
    b.extra.setdefault("stenoses", []).extend(stenoses)
    b.extra.setdefault("aneurysms", []).extend(aneurysms)


# ---------------------------------------------------------------------- generator
def _params_from(params: LSystemParams | None, overrides: dict[str, Any]) -> LSystemParams:
    p = with_overrides(params or LSystemParams(), overrides, "lsystem")
    p = replace(p, origin_mm=tuple(float(x) for x in p.origin_mm), direction=tuple(float(x) for x in p.direction))
    return p.validate()


def generate_lsystem(seed: int, params: LSystemParams | None = None, **overrides: Any) -> VesselTree:
    """Generate a stochastic L-system vessel tree.

    Parameters
    ----------
    seed : int
        Seed of ``numpy.random.default_rng``; same seed and params -> identical tree.
    params : LSystemParams, optional
        Base parameters (defaults: cerebral scale, root diameter 3 mm).
    **overrides
        Field overrides of :class:`LSystemParams`.

    Returns
    -------
    VesselTree
        Root at ``origin_mm``; metadata has ``generator="lsystem"``, ``seed``, ``params``,
        ``stenoses`` and ``aneurysms``.
    """
    from vessel_models.io import normalized_metadata

    p = _params_from(params, overrides)
    rng = np.random.default_rng(int(seed))
    b = TreeBuilder()
    grow_lsystem(b, -1, p.direction, p, rng)
    meta = {
        "generator": "lsystem",
        "seed": int(seed),
        "params": asdict(p),
        "murray_exponent": p.murray_exponent,
        "stenoses": b.extra.get("stenoses", []),
        "aneurysms": b.extra.get("aneurysms", []),
    }
    tree = b.build(meta)
    tree.metadata = normalized_metadata(tree.metadata)
    return tree


# ---------------------------------------------------------------------- published design grid
#: The V-System design of the synthetic-DDSA work (1,584 skeletons), in the grammar's own units:
#: ``d0`` mean initial diameter, ``iterations``, ``epsilon`` (segment length / diameter) and ``d``.
PUBLISHED_GRID_AXES: dict[str, tuple] = {
    "d0": tuple(float(x) for x in range(10, 61, 5)),
    "iterations": tuple(range(6, 14)),
    "epsilon": tuple(float(x) for x in range(4, 10)),
    "d": (1.2, 1.5, 2.0),
}
#: Millimetres per grammar diameter unit: ``d0`` 10-60 -> root diameters 1-6 mm (an M2 branch to
#: an internal carotid; docs/vessels.md).
GRAMMAR_UNIT_MM = 0.1


def grammar_to_params(d0: float, iterations: int, epsilon: float, d: float) -> dict[str, Any]:
    """:class:`LSystemParams` fields (mm) of one V-System design point (grammar units).

    Parameters
    ----------
    d0 : float
        Mean initial diameter, grammar units (x :data:`GRAMMAR_UNIT_MM` -> mm).
    iterations : int
        Rewriting iterations (unchanged).
    epsilon : float
        Segment length / diameter ratio (dimensionless, unchanged).
    d : float
        Diameter divisor of a symmetric bifurcation (> 1): mapped to the Murray exponent
        ``k = ln 2 / ln d``, the exponent whose symmetric split divides the diameter by ``d``
        (1.2 -> 3.80, 1.5 -> 1.71, 2.0 -> 1.00).

    Returns
    -------
    dict
        ``root_diameter_mm``, ``iterations``, ``length_diameter_ratio``, ``murray_exponent``.
    """
    if not d > 1:
        raise VesselInputError(f"V-System parameter d={d!r} must be > 1 (diameter divisor)")
    return {
        "root_diameter_mm": round(float(d0) * GRAMMAR_UNIT_MM, 6),
        "iterations": int(iterations),
        "length_diameter_ratio": float(epsilon),
        "murray_exponent": round(math.log(2.0) / math.log(float(d)), 6),
    }


def design_depth(root_diameter_mm: float, murray_exponent: float, min_radius_mm: float | None = None,
                 asymmetry_min: float | None = None) -> int:
    """Most bifurcation levels any tree of this design can have under the ``min_radius_mm`` stop.

    An apex of diameter ``D`` splits only if its thinner daughter, at most ``D 2^(-1/k)`` (a symmetric split),
    keeps a radius of ``min_radius_mm``; each level divides the diameter by at least ``(1 + a_min^k)^(1/k)``
    (the thicker daughter of the most asymmetric split). So no apex below level ``L`` splits, with ``L`` the
    number of levels ``j >= 0`` where ``D0 (1 + a_min^k)^(-j/k) 2^(-1/k) >= 2 min_radius_mm``: rewriting for
    ``iterations >= L`` gives trees of one distribution (byte-identical from one seed for ``iterations > L``).

    Parameters
    ----------
    root_diameter_mm : float
        Root diameter (mm).
    murray_exponent : float
        ``k``.
    min_radius_mm, asymmetry_min : float, optional
        Defaults: :class:`LSystemParams`'.

    Returns
    -------
    int
        ``L`` (0: the root never splits).
    """
    defaults = LSystemParams()
    r_min = defaults.min_radius_mm if min_radius_mm is None else min_radius_mm
    a_min = defaults.asymmetry_min if asymmetry_min is None else asymmetry_min
    k = murray_exponent
    top = root_diameter_mm * 2.0 ** (-1.0 / k) / (2.0 * r_min)
    if top < 1.0:
        return 0
    # + 1e-9: a ratio a rounding error below an integer counts that level (a bound may be loose, never short)
    return math.floor(math.log(top) / math.log((1.0 + a_min**k) ** (1.0 / k)) + 1e-9) + 1


def published_grid(base_seed: int = 0, distinct: bool = True) -> list[dict[str, Any]]:
    """The design points of :data:`PUBLISHED_GRID_AXES`, mapped to mm.

    Parameters
    ----------
    base_seed : int
        Seed of the first design point; point ``i`` (of the list returned) gets seed ``base_seed + i``.
    distinct : bool
        True (what an export's ``params: published-grid`` draws from): the 966 distinct designs that can
        branch on two levels or more. Under the 0.2 mm ``min_radius_mm`` stop a design's ``iterations`` beyond
        its :func:`design_depth` change nothing, so the 612 points that differ from an earlier one only there
        are left out (most of ``d`` = 1.5 and 2.0), as are the 6 left whose depth is 1 (one bifurcation at
        most). False: all 11 x 8 x 6 x 3 = 1,584 points of the paper's grid.

    Returns
    -------
    list of dict
        ``[{"seed": int, **grammar_to_params(...)}, ...]`` in row-major order of the axes; each
        dict can be passed as ``generate_lsystem(**d)``.
    """
    keys = list(PUBLISHED_GRID_AXES)
    points, seen = [], set()
    for combo in itertools.product(*(PUBLISHED_GRID_AXES[k] for k in keys)):
        point = grammar_to_params(**dict(zip(keys, combo)))
        if distinct:
            depth = design_depth(point["root_diameter_mm"], point["murray_exponent"])
            design = (point["root_diameter_mm"], min(point["iterations"], depth), point["length_diameter_ratio"],
                      point["murray_exponent"])
            if depth < 2 or design in seen:
                continue
            seen.add(design)
        points.append(point)
    return [{"seed": base_seed + i, **point} for i, point in enumerate(points)]
