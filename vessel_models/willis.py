"""Circle of Willis template with anatomical variants and distal L-system branching.

Frame: patient LPS, mm (+x left, +y posterior, +z superior), origin near the centre of the
circle. Segments (labels): ``ICA_L/R``, ``BA``, ``P1_L/R``, ``P2_L/R``, ``PCoA_L/R``,
``A1_L/R``, ``A2_L/R``, ``ACoA``, ``M1_L/R``, ``M2s_L/R`` (superior trunk), ``M2i_L/R``
(inferior trunk). Radii are typical adult lumen radii (diameters: ICA 4.0, BA 3.2, M1 2.8,
A1 2.2, A2 2.0, P1 2.1, P2 2.0, M2 2.0, ACoA 1.5, PCoA 1.2 mm) with log-normal jitter.

The circle is a cycle; the tree is a spanning tree rooted at the proximal left ICA. A segment
that closes a cycle is emitted as a leaf whose last node coincides with the junction it joins
(the geometry is complete, the graph stays a tree). When variants disconnect the posterior
circulation (both PCoAs absent, or a hypoplastic/absent set that splits the circle), the parts
are joined by a ``virtual`` branch of radius 1 um between the proximal trunks: it carries no
meaningful lumen, is labelled ``virtual`` and is excluded from morphometrics.

Variants are drawn per side from a dedicated random stream (independent of geometry):

* ``A1``: hypoplastic (radius x 0.4) or absent;
* ``P1`` (fetal PCA): partial fetal = hypoplastic P1 with a PCoA as wide as P2, full fetal =
  absent P1 (PCoA as wide as P2);
* ``PCoA`` (only when not fetal): hypoplastic (x 0.4) or absent;
* ``ACoA``: absent (only allowed when both A1 are present; otherwise forced present).

``metadata["variants"]`` records the draw, e.g. ``{"A1_L": "normal", "P1_R": "fetal_full", ...}``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from vessel_models.lsystem import LSystemParams, grow_lsystem
from vessel_models.tree import TreeBuilder, VesselInputError, VesselTree

__all__ = ["WillisParams", "generate_willis", "draw_variants", "SEGMENT_RADII_MM"]

SEGMENT_RADII_MM = {
    "ICA": 2.0,
    "BA": 1.6,
    "M1": 1.4,
    "M2s": 1.0,
    "M2i": 1.0,
    "A1": 1.1,
    "A2": 1.0,
    "P1": 1.05,
    "P2": 1.0,
    "ACoA": 0.75,
    "PCoA": 0.6,
}
HYPOPLASTIC_FACTOR = 0.4
VIRTUAL_RADIUS_MM = 1e-3


@dataclass(frozen=True)
class WillisParams:
    """Parameters of the Circle of Willis generator (probabilities per side, lengths mm).

    Attributes
    ----------
    a1_hypoplastic_prob, a1_absent_prob : float
        Per-side prevalence of a hypoplastic / absent A1.
    pcoa_hypoplastic_prob, pcoa_absent_prob : float
        Per-side prevalence of a hypoplastic / absent PCoA (sides that are not fetal).
    fetal_partial_prob, fetal_full_prob : float
        Per-side prevalence of a partial (hypoplastic P1) / full (absent P1) fetal PCA.
    acoa_absent_prob : float
        Prevalence of an absent ACoA (when both A1 exist).
    radius_jitter : float
        Log-normal sigma of per-segment radius variation.
    position_jitter_mm : float
        Gaussian sigma of junction position variation.
    scale : float
        Overall size factor (1 = average adult).
    distal_iterations : int
        L-system iterations grown from the ends of A2, M2 and P2 (0 = none).
    distal_length_diameter_ratio, distal_tortuosity_deg, min_radius_mm : float
        L-system parameters of the distal trees.
    step_mm : float
        Node spacing along template segments.
    """

    a1_hypoplastic_prob: float = 0.08
    a1_absent_prob: float = 0.02
    pcoa_hypoplastic_prob: float = 0.20
    pcoa_absent_prob: float = 0.25
    fetal_partial_prob: float = 0.10
    fetal_full_prob: float = 0.05
    acoa_absent_prob: float = 0.02
    radius_jitter: float = 0.08
    position_jitter_mm: float = 1.0
    scale: float = 1.0
    distal_iterations: int = 3
    distal_length_diameter_ratio: float = 8.0
    distal_tortuosity_deg: float = 8.0
    min_radius_mm: float = 0.2
    step_mm: float = 1.5

    def validate(self) -> "WillisParams":
        """Raise :class:`VesselInputError` naming the first bad field; return self."""
        for name in (
            "a1_hypoplastic_prob", "a1_absent_prob", "pcoa_hypoplastic_prob", "pcoa_absent_prob",
            "fetal_partial_prob", "fetal_full_prob", "acoa_absent_prob",
        ):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise VesselInputError(f"willis parameter {name}={v!r} must be a probability in [0, 1]")
        for a, b in (("a1_hypoplastic_prob", "a1_absent_prob"), ("pcoa_hypoplastic_prob", "pcoa_absent_prob"),
                     ("fetal_partial_prob", "fetal_full_prob")):
            if getattr(self, a) + getattr(self, b) > 1:
                raise VesselInputError(f"willis parameters {a} + {b} must not exceed 1")
        checks = [
            ("radius_jitter", 0 <= self.radius_jitter < 1),
            ("position_jitter_mm", 0 <= self.position_jitter_mm < 10),
            ("scale", 0 < self.scale < 10),
            ("distal_iterations", 0 <= self.distal_iterations <= 8),
            ("distal_length_diameter_ratio", self.distal_length_diameter_ratio > 0),
            ("distal_tortuosity_deg", 0 <= self.distal_tortuosity_deg < 90),
            ("min_radius_mm", self.min_radius_mm > 0),
            ("step_mm", self.step_mm > 0),
        ]
        for name, ok in checks:
            if not ok:
                raise VesselInputError(f"willis parameter {name}={getattr(self, name)!r} is out of range")
        return self


def _category(rng: np.random.Generator, probs: list[tuple[str, float]]) -> str:
    u = rng.random()
    acc = 0.0
    for name, p in probs:
        acc += p
        if u < acc:
            return name
    return "normal"


def draw_variants(params: WillisParams, rng: np.random.Generator) -> dict[str, str]:
    """Draw the anatomical variant of each variable segment (see module docstring).

    Returns
    -------
    dict
        ``{"A1_L"|"A1_R": normal|hypoplastic|absent, "P1_L"|"P1_R": normal|fetal_partial|fetal_full,
        "PCoA_L"|"PCoA_R": normal|hypoplastic|absent|fetal, "ACoA": normal|absent}``.
    """
    v: dict[str, str] = {}
    for side in ("L", "R"):
        v[f"A1_{side}"] = _category(rng, [("hypoplastic", params.a1_hypoplastic_prob), ("absent", params.a1_absent_prob)])
        v[f"P1_{side}"] = _category(rng, [("fetal_partial", params.fetal_partial_prob), ("fetal_full", params.fetal_full_prob)])
        pcoa = _category(rng, [("hypoplastic", params.pcoa_hypoplastic_prob), ("absent", params.pcoa_absent_prob)])
        v[f"PCoA_{side}"] = "fetal" if v[f"P1_{side}"] != "normal" else pcoa
    acoa = _category(rng, [("absent", params.acoa_absent_prob)])
    if v["A1_L"] == "absent" and v["A1_R"] == "absent":
        v["A1_R"] = "hypoplastic"  # both A1 absent leaves the A2s unfed: not a viable anatomy
    if "absent" in (v["A1_L"], v["A1_R"]):
        acoa = "normal"  # the ACoA feeds the A2 of the side without an A1
    v["ACoA"] = acoa
    return v


def _template(params: WillisParams, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, tuple]]:
    """Junction positions and segments ``name -> (junction_a, junction_b, [via points], radius_key)``."""
    j: dict[str, np.ndarray] = {}
    for s, sx in (("L", 1.0), ("R", -1.0)):
        j[f"ICAprox_{s}"] = np.array([14.0 * sx, -4.0, -38.0])
        j[f"ICAT_{s}"] = np.array([13.0 * sx, -8.0, 0.0])
        j[f"ACAJ_{s}"] = np.array([1.6 * sx, -20.0, 2.0])
        j[f"A2end_{s}"] = np.array([2.5 * sx, -34.0, 20.0])
        j[f"M1J_{s}"] = np.array([29.0 * sx, -6.0, 2.0])
        j[f"M2send_{s}"] = np.array([40.0 * sx, -8.0, 16.0])
        j[f"M2iend_{s}"] = np.array([41.0 * sx, 3.0, -6.0])
        j[f"PJ_{s}"] = np.array([9.0 * sx, 8.0, -1.0])
        j[f"P2end_{s}"] = np.array([18.0 * sx, 32.0, 6.0])
    j["BAT"] = np.array([0.0, 10.0, -3.0])
    j["BAprox"] = np.array([0.0, 15.0, -32.0])
    for k in sorted(j):
        j[k] = j[k] * params.scale + (rng.normal(0.0, params.position_jitter_mm, 3) if params.position_jitter_mm else 0.0)
    segs: dict[str, tuple] = {}
    for s, sx in (("L", 1.0), ("R", -1.0)):
        siphon = [np.array([15.0 * sx, -12.0, -24.0]) * params.scale, np.array([14.5 * sx, -15.0, -10.0]) * params.scale]
        segs[f"ICA_{s}"] = (f"ICAprox_{s}", f"ICAT_{s}", siphon, "ICA")
        segs[f"A1_{s}"] = (f"ICAT_{s}", f"ACAJ_{s}", [], "A1")
        segs[f"A2_{s}"] = (f"ACAJ_{s}", f"A2end_{s}", [], "A2")
        segs[f"M1_{s}"] = (f"ICAT_{s}", f"M1J_{s}", [], "M1")
        segs[f"M2s_{s}"] = (f"M1J_{s}", f"M2send_{s}", [], "M2s")
        segs[f"M2i_{s}"] = (f"M1J_{s}", f"M2iend_{s}", [], "M2i")
        segs[f"PCoA_{s}"] = (f"ICAT_{s}", f"PJ_{s}", [], "PCoA")
        segs[f"P1_{s}"] = ("BAT", f"PJ_{s}", [], "P1")
        segs[f"P2_{s}"] = (f"PJ_{s}", f"P2end_{s}", [np.array([15.0 * sx, 20.0, 2.0]) * params.scale], "P2")
    segs["ACoA"] = ("ACAJ_L", "ACAJ_R", [], "ACoA")
    segs["BA"] = ("BAprox", "BAT", [], "BA")
    return j, segs


def _radii(params: WillisParams, variants: dict[str, str], rng: np.random.Generator, names: list[str]) -> dict[str, float]:
    r: dict[str, float] = {}
    for name in names:
        key = name.split("_")[0]
        r[name] = SEGMENT_RADII_MM[key] * params.scale * float(np.exp(rng.normal(0.0, params.radius_jitter)))
    for s in ("L", "R"):
        if variants[f"A1_{s}"] == "hypoplastic":
            r[f"A1_{s}"] *= HYPOPLASTIC_FACTOR
        if variants[f"P1_{s}"] == "fetal_partial":
            r[f"P1_{s}"] *= HYPOPLASTIC_FACTOR
        if variants[f"P1_{s}"] != "normal":
            r[f"PCoA_{s}"] = r[f"P2_{s}"]
        if variants[f"PCoA_{s}"] == "hypoplastic":
            r[f"PCoA_{s}"] *= HYPOPLASTIC_FACTOR
    return r


def generate_willis(seed: int, params: WillisParams | None = None, **overrides: Any) -> VesselTree:
    """Generate a Circle of Willis tree with variants and distal L-system branching.

    Parameters
    ----------
    seed : int
        Seed; variants, geometry and distal trees use independent child streams of it.
    params : WillisParams, optional
        Base parameters.
    **overrides
        Field overrides of :class:`WillisParams`.

    Returns
    -------
    VesselTree
        Rooted at the proximal left ICA; ``metadata["labels"]`` names the template branches,
        ``metadata["variants"]`` the variant draw.
    """
    from vessel_models.io import normalized_metadata

    base = params or WillisParams()
    names = {f.name for f in fields(WillisParams)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise VesselInputError(f"unknown cow parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    p = replace(base, **overrides).validate()
    ss = np.random.SeedSequence(int(seed))
    rng_var, rng_geo, rng_distal = (np.random.default_rng(s) for s in ss.spawn(3))
    variants = draw_variants(p, rng_var)
    junctions, segs = _template(p, rng_geo)
    radii = _radii(p, variants, rng_geo, sorted(segs))
    present = {n: s for n, s in segs.items() if variants.get(n) not in ("absent",) and not (n.startswith("P1") and variants[n] == "fetal_full")}
    if variants["ACoA"] == "absent":
        present.pop("ACoA", None)

    # adjacency over junctions (deterministic order)
    adj: dict[str, list[str]] = {}
    for n in sorted(present):
        a, b_, _, _ = present[n]
        adj.setdefault(a, []).append(n)
        adj.setdefault(b_, []).append(n)

    b = TreeBuilder()
    node_of: dict[str, int] = {}
    dir_of: dict[str, np.ndarray] = {}
    done: set[str] = set()
    virtual: list[int] = []

    def emit(name: str, start: str, parent_node: int, gen: int, label: str, radius: float) -> tuple[int, str]:
        a, b_, via, _ = present[name] if name in present else (start, start, [], "")
        end = b_ if a == start else a
        pts = [junctions[start]] + (list(via) if a == start else list(reversed(via))) + [junctions[end]]
        bid = b.new_branch(gen, label)
        node = parent_node
        for p0, p1 in zip(pts[:-1], pts[1:]):
            n_sub = max(2, int(math.ceil(np.linalg.norm(p1 - p0) / p.step_mm)))
            for k in range(1, n_sub + 1):
                node = b.add_node(p0 + (p1 - p0) * (k / n_sub), radius, node, bid)
        dir_of[end] = pts[-1] - pts[-2]
        return node, end

    root_j = "ICAprox_L"
    bid0 = b.new_branch(0, "ICA_L_root")
    b.labels.pop(bid0)
    node_of[root_j] = b.add_node(junctions[root_j], radii["ICA_L"], -1, bid0)
    gen_of = {root_j: 0}
    components_left = True
    queue = deque([root_j])
    while components_left:
        while queue:
            u = queue.popleft()
            for name in adj.get(u, []):
                if name in done:
                    continue
                done.add(name)
                a, b_, _, _ = present[name]
                other = b_ if a == u else a
                last, end = emit(name, u, node_of[u], gen_of[u] + (0 if u == root_j and name == "ICA_L" else 1), name, radii[name])
                if other not in node_of:
                    node_of[other] = last
                    gen_of[other] = gen_of[u] + 1
                    queue.append(other)
        missing = sorted(j for j in adj if j not in node_of)
        components_left = bool(missing)
        if missing:
            # join a disconnected part through a virtual connector between proximal trunks
            target = "BAprox" if "BAprox" in missing else ("ICAprox_R" if "ICAprox_R" in missing else missing[0])
            src = "ICAprox_L"
            vbid = b.new_branch(1, "virtual")
            p_src, p_dst = junctions[src], junctions[target]
            unit = (p_dst - p_src) / np.linalg.norm(p_dst - p_src)
            trunk = next(n for n in sorted(present) if target in present[n][:2])
            n1 = b.add_node(p_src + 0.01 * unit, VIRTUAL_RADIUS_MM, node_of[src], vbid)
            n1 = b.add_node(p_dst - 0.01 * unit, VIRTUAL_RADIUS_MM, n1, vbid)
            n1 = b.add_node(p_dst, radii[trunk], n1, vbid)
            virtual.append(vbid)
            node_of[target] = n1
            gen_of[target] = 1
            queue.append(target)
    # the root node belongs to the ICA_L branch
    ica_bid = next(k for k, v in b.labels.items() if v == "ICA_L")
    b._bid[0] = ica_bid  # noqa: SLF001 (builder is local)

    if p.distal_iterations > 0:
        lp = LSystemParams(
            iterations=p.distal_iterations,
            length_diameter_ratio=p.distal_length_diameter_ratio,
            tortuosity_deg=p.distal_tortuosity_deg,
            min_radius_mm=p.min_radius_mm,
            step_mm=p.step_mm,
            root_diameter_mm=2.0,
        )
        for end in ("A2end_L", "A2end_R", "M2send_L", "M2send_R", "M2iend_L", "M2iend_R", "P2end_L", "P2end_R"):
            if end not in node_of:
                continue
            n = node_of[end]
            d = 2.0 * b.radius(n)
            if d / 2 < p.min_radius_mm * 1.5:
                continue
            grow_lsystem(b, n, dir_of[end], lp, rng_distal, root_diameter_mm=d, generation_offset=gen_of[end] + 1)

    meta = {
        "generator": "cow",
        "seed": int(seed),
        "params": asdict(p),
        "variants": variants,
        "virtual_branches": virtual,
        "frame": "LPS",
        "root": "ICA_L proximal",
    }
    tree = b.build(meta)
    tree.metadata = normalized_metadata(tree.metadata)
    return tree
