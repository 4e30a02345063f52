"""Coronary artery trees on a heart-sized ellipsoid with distal L-system branching.

Heart frame (mm): ellipsoid semi-axes ``(a, b, c)`` centred at the origin, long axis ``z``
(base at ``+z``, apex at ``-z``), ``+x`` towards the patient's left wall, ``-y`` anterior. The
atrioventricular (AV) groove is the ellipse at ``z = z_base``; the interventricular grooves
are meridians at azimuth ``phi_ant`` (anterior) and ``phi_post`` (posterior). Vessels run on
the epicardial surface (offset by their radius). A rotation then places the heart in patient
LPS (apex pointing left, anterior and inferior) and ``centre_mm`` translates it.

Main courses (labels): ``LM`` (from its ostium to the top of the anterior groove, arriving between its
branches at the angles of CT angiography) -> ``LAD`` (anterior groove to the apex, with diagonals ``D1``,
``D2`` on the surface and septal perforators ``S1``-``S3`` into the septum) and ``LCx`` (left AV
groove, with obtuse marginals ``OM1``, ``OM2``); ``RCA`` (forward from its ostium on an arc into the
right AV groove, then to the crux, with an acute marginal ``AM``) -> ``PDA`` (posterior groove), by
``dominance``. Proximal diameters follow Dodge et al. 1992 (LM 4.5, proximal LAD 3.7, LCx 3.4 / 4.2
dominant, RCA 3.9 / 2.8 non-dominant mm). ``side`` selects ``"left"``, ``"right"`` or ``"both"`` (joined
through a ``virtual`` 1 um connector across the aortic root, excluded from morphometrics).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vessel_models.lsystem import LSystemParams, grow_lsystem
from vessel_models.tree import TreeBuilder, VesselInputError, VesselTree, check_finite_params, with_overrides

__all__ = ["LM_LAD_DEVIATION_DEG", "LM_LCX_DEVIATION_DEG", "SEPTAL_PERFORATORS", "CoronaryParams", "generate_coronary",
           "heart_rotation"]

#: Labels of the LAD's septal perforators: they dive into the interventricular septum, off the epicardium.
SEPTAL_PERFORATORS = ("S1", "S2", "S3")

#: Azimuth (deg, heart frame) where the proximal RCA enters the right AV groove. Its ostium, in the right aortic
#: sinus (forward and to the right on the aortic root), lies inside the ring of the groove, so the RCA reaches the
#: groove on a circular arc that leaves the ostium forward, to the right and down, as the artery passes anteriorly
#: and to the right between the right auricle and the pulmonary trunk, and meets the groove along it: 92-123 deg
#: over 22-32 mm (15-28 deg per 5 mm; seeds 0-7, right and both). An entry further forward needs a sharper turn.
RCA_GROOVE_ENTRY_DEG = -150.0


#: Angles (deg) by which the LAD and the LCx leave the line of the left main at its bifurcation: the LM-LAD angle,
#: 37.5 deg on average (Moon et al., PLoS One 2018;13:e0202249, CTA of 201 patients), and the LM-LCx angle between
#: the two vessels, 130 deg in median (Handran et al., J Invasive Cardiol 2015;27:401, CCTA of 44 patients), so
#: 50 deg off the LM's line.
LM_LAD_DEVIATION_DEG = 37.5
LM_LCX_DEVIATION_DEG = 50.0


@dataclass(frozen=True)
class CoronaryParams:
    """Parameters of the coronary generator (mm, degrees).

    Attributes
    ----------
    side : str
        ``"left"`` (a left coronary injection: LM and its branches), ``"right"`` (RCA) or ``"both"``.
    dominance : str
        Which artery gives the posterior descending artery: ``"right"`` (RCA -> PDA), ``"left"``
        (LCx runs on to the crux and gives the PDA; small RCA), ``"co"`` (RCA -> PDA, LCx reaches
        the crux), or ``"random"`` (right 80 %, co 10 %, left 10 %; drawn from the seed).
    course_wiggle_mm : float
        Amplitude of the tangential waviness of the main courses on the epicardium (sum of two
        sines of 18-30 mm wavelength); 0 gives smooth groove curves.
    semi_axes_mm : tuple of float
        Ellipsoid semi-axes ``(a, b, c)``; ``c`` along the long axis.
    base_fraction : float
        AV-groove height as a fraction of ``c`` (``z_base = base_fraction * c``).
    lm_radius_mm, lad_radius_mm, lcx_radius_mm, rca_radius_mm : float
        Proximal lumen radii (distal ends taper to ~45 %).
    lm_length_mm, lm_length_jitter : float
        Median left-main length (ostium to the LAD / LCx bifurcation) and its log-normal sigma; the
        defaults (8 mm, 0.3: mean 8.4, SD 2.6 mm) sit inside IVUS morphometry of normal left mains,
        7.4 +- 4.2 mm (van Zandvoort et al. 2018).
    size_jitter, radius_jitter : float
        Log-normal sigma of the heart size and of vessel radii.
    angle_jitter_deg : float
        Gaussian sigma of the groove / side-branch azimuths.
    distal_iterations : int
        L-system iterations grown from every distal end (0 = none).
    distal_length_diameter_ratio, distal_tortuosity_deg, min_radius_mm, step_mm : float
        Distal L-system and sampling parameters.
    centre_mm : tuple of float
        Heart centre in patient LPS.
    """

    side: str = "left"
    dominance: str = "right"
    course_wiggle_mm: float = 2.5
    semi_axes_mm: tuple = (42.0, 38.0, 55.0)
    base_fraction: float = 0.55
    lm_radius_mm: float = 2.2
    lm_length_mm: float = 8.0
    lm_length_jitter: float = 0.3
    lad_radius_mm: float = 1.8
    lcx_radius_mm: float = 1.6
    rca_radius_mm: float = 1.8
    size_jitter: float = 0.06
    radius_jitter: float = 0.08
    angle_jitter_deg: float = 6.0
    distal_iterations: int = 2
    distal_length_diameter_ratio: float = 6.0
    distal_tortuosity_deg: float = 42.0
    min_radius_mm: float = 0.25
    step_mm: float = 2.0
    centre_mm: tuple = (0.0, 0.0, 0.0)

    def validate(self) -> "CoronaryParams":
        """Raise :class:`VesselInputError` naming the first bad field; return self."""
        check_finite_params(self, "coronary")
        ax = np.asarray(self.semi_axes_mm, dtype=float).reshape(-1)
        cen = np.asarray(self.centre_mm, dtype=float).reshape(-1)
        choices = {"side": ("left", "right", "both"), "dominance": ("right", "left", "co", "random")}
        checks = [
            ("side", self.side in choices["side"]),
            ("dominance", self.dominance in choices["dominance"]),
            ("course_wiggle_mm", 0 <= self.course_wiggle_mm < 10),
            ("semi_axes_mm", ax.shape == (3,) and bool(np.all(ax > 0)) and bool(np.all(np.isfinite(ax)))),
            ("base_fraction", 0 < self.base_fraction < 0.95),
            ("lm_radius_mm", self.lm_radius_mm > 0),
            ("lm_length_mm", 0 < self.lm_length_mm <= 40),
            ("lm_length_jitter", 0 <= self.lm_length_jitter < 1),
            ("lad_radius_mm", self.lad_radius_mm > 0),
            ("lcx_radius_mm", self.lcx_radius_mm > 0),
            ("rca_radius_mm", self.rca_radius_mm > 0),
            ("size_jitter", 0 <= self.size_jitter < 1),
            ("radius_jitter", 0 <= self.radius_jitter < 1),
            ("angle_jitter_deg", 0 <= self.angle_jitter_deg < 45),
            ("distal_iterations", 0 <= self.distal_iterations <= 6),
            ("distal_length_diameter_ratio", self.distal_length_diameter_ratio > 0),
            ("distal_tortuosity_deg", 0 <= self.distal_tortuosity_deg < 90),
            ("min_radius_mm", self.min_radius_mm > 0),
            ("step_mm", self.step_mm > 0),
            ("centre_mm", cen.shape == (3,) and bool(np.all(np.isfinite(cen)))),
        ]
        for name, ok in checks:
            if not ok:
                hint = f" (one of {', '.join(choices[name])})" if name in choices else ""
                raise VesselInputError(f"coronary parameter {name}={getattr(self, name)!r} is invalid{hint}")
        return self


def heart_rotation() -> np.ndarray:
    """3x3 rotation from the heart frame to patient LPS (long axis base->apex points left,
    anterior and inferior, as in a typical adult heart)."""
    apex_dir = np.array([0.55, -0.45, -0.70])  # +x left, -y anterior, -z inferior
    apex_dir /= np.linalg.norm(apex_dir)
    z_h = -apex_dir  # heart +z (base) direction in LPS
    y_h = np.array([0.0, 1.0, 0.0]) - z_h * z_h[1]  # heart -y stays roughly anterior
    y_h /= np.linalg.norm(y_h)
    x_h = np.cross(y_h, z_h)
    return np.stack([x_h, y_h, z_h], axis=1)


class _Surface:
    def __init__(self, axes: np.ndarray):
        self.a, self.b, self.c = axes

    def point(self, phi: float, z: float, offset: float) -> np.ndarray:
        z = max(-self.c * 0.995, min(self.c * 0.995, z))
        s = math.sqrt(max(0.0, 1.0 - (z / self.c) ** 2))
        p = np.array([self.a * s * math.cos(phi), self.b * s * math.sin(phi), z])
        n = np.array([p[0] / self.a**2, p[1] / self.b**2, p[2] / self.c**2])
        return p + offset * n / np.linalg.norm(n)


def _arc_into(end: np.ndarray, tangent: np.ndarray, start: np.ndarray, step_deg: float = 3.0
              ) -> tuple[list[np.ndarray], float]:
    """The circular arc from ``start`` that reaches ``end`` heading along ``tangent``.

    Parameters
    ----------
    end, start : (3,) ndarray
        The arc's last and first points (mm).
    tangent : (3,) ndarray
        Its direction at ``end`` (any length).
    step_deg : float
        Angle between successive points (deg).

    Returns
    -------
    points : list of (3,) ndarray
        From ``start`` to ``end``.
    length_mm : float
        The arc's length. It turns by twice the angle between the chord and ``tangent``: more than 180 deg (a
        loop) when ``start`` lies ahead of ``end``; a straight chord when the chord is parallel to ``tangent``.
    """
    u = -tangent / np.linalg.norm(tangent)  # walked backwards from ``end``
    chord = start - end
    length = float(np.linalg.norm(chord))
    across = chord - (chord @ u) * u
    if np.linalg.norm(across) < 1e-9 * max(length, 1.0):  # no circle (or a line) through both along the tangent
        return [start, end], length
    half = math.atan2(float(np.linalg.norm(across)), float(chord @ u))  # half the arc's turn
    radius = length / (2.0 * math.sin(half))
    n = across / np.linalg.norm(across)
    angles = np.linspace(2.0 * half, 0.0, max(2, int(math.ceil(math.degrees(2.0 * half) / step_deg)) + 1))
    return [end + radius * (math.sin(a) * u + (1.0 - math.cos(a)) * n) for a in angles], radius * 2.0 * half


def _left_main_direction(lad: np.ndarray, lcx: np.ndarray, outward: np.ndarray) -> np.ndarray:
    """The unit direction in which the left main reaches its bifurcation.

    Parameters
    ----------
    lad, lcx : (3,) ndarray
        The LAD's and the LCx's first directions from the bifurcation (any length).
    outward : (3,) ndarray
        The heart surface's outward normal there (any length).

    Returns
    -------
    (3,) ndarray
        The direction that the LAD leaves by :data:`LM_LAD_DEVIATION_DEG` and the LCx by
        :data:`LM_LCX_DEVIATION_DEG`: its part in the branches' plane has those cosines with them, and the rest of its
        unit length rises out of that plane on the outward side, as the LM comes from the aortic root beneath the
        surface. Where the branches part too widely for both angles, its part in their plane alone, scaled to unit
        length (both angles then larger).
    """
    u = lad / np.linalg.norm(lad)
    v = lcx / np.linalg.norm(lcx)
    c = float(u @ v)
    alpha, beta = np.linalg.solve([[1.0, c], [c, 1.0]], np.cos(np.radians([LM_LAD_DEVIATION_DEG, LM_LCX_DEVIATION_DEG])))
    in_plane = alpha * u + beta * v
    size = float(np.linalg.norm(in_plane))
    if size >= 1.0:
        return in_plane / size
    across = np.cross(u, v)
    across *= math.copysign(1.0, float(across @ outward)) / np.linalg.norm(across)
    return in_plane + math.sqrt(1.0 - size**2) * across


def generate_coronary(seed: int, params: CoronaryParams | None = None, **overrides: Any) -> VesselTree:
    """Generate a left, right or both coronary trees.

    Parameters
    ----------
    seed : int
        Seed; geometry and distal trees use independent child streams.
    params : CoronaryParams, optional
        Base parameters.
    **overrides
        Field overrides of :class:`CoronaryParams`.

    Returns
    -------
    VesselTree
        Rooted at the left (``side="left"``/``"both"``) or right ostium, patient LPS mm.
    """
    from vessel_models.io import normalized_metadata

    p = with_overrides(params or CoronaryParams(), overrides, "coronary").validate()
    # spawn(3)'s first two children equal spawn(2)'s: the LM length stream leaves the others unchanged
    rng_geo, rng_distal, rng_lm = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(3))

    axes = np.asarray(p.semi_axes_mm, dtype=float) * float(np.exp(rng_geo.normal(0.0, p.size_jitter)))
    surf = _Surface(axes)
    z_base = p.base_fraction * axes[2]
    z_apex = -0.92 * axes[2]
    jit = lambda: math.radians(rng_geo.normal(0.0, p.angle_jitter_deg))  # noqa: E731
    rj = lambda: float(np.exp(rng_geo.normal(0.0, p.radius_jitter)))  # noqa: E731
    dominance = p.dominance
    if dominance == "random":
        dominance = str(rng_geo.choice(["right", "co", "left"], p=[0.8, 0.1, 0.1]))
    phi_ant = math.radians(-60.0) + jit()
    phi_post = math.radians(120.0) + jit()
    aorta = np.array([-0.1 * axes[0], -0.15 * axes[1], z_base + 12.0])

    b = TreeBuilder()
    ends: list[tuple[int, np.ndarray, int]] = []  # distal ends: (node, direction, generation)

    def course(parent: int, pts: list[np.ndarray], r0: float, r1: float, label: str, gen: int, tip: bool = True,
               wavy: bool = True, wavy_from_mm: float = 0.0) -> list[int]:
        # nodes every ~step_mm along the polyline ``pts``; with ``wavy`` the epicardial waviness begins
        # ``wavy_from_mm`` along it (after a lead off the surface)
        pts_arr = np.array(pts)
        seg = np.linalg.norm(np.diff(pts_arr, axis=0), axis=1)
        s = np.r_[0.0, np.cumsum(seg)]
        total = s[-1]
        n = max(3, int(math.ceil(total / p.step_mm)))
        bid = b.new_branch(gen, label)
        nodes = []
        node = parent
        wiggle = p.course_wiggle_mm if wavy else 0.0
        if wiggle > 0:
            lam = rng_geo.uniform(18.0, 30.0, 2)
            ph = rng_geo.uniform(0.0, 2.0 * math.pi, 2)
        for k in range(1, n + 1):
            t = total * k / n
            pos = np.array([np.interp(t, s, pts_arr[:, d]) for d in range(3)])
            if wiggle > 0 and t > wavy_from_mm:  # sideways on the surface, faded in over 10 mm, back onto it
                ahead = np.array([np.interp(min(t + 0.5, total), s, pts_arr[:, d]) for d in range(3)])
                behind = np.array([np.interp(max(t - 0.5, 0.0), s, pts_arr[:, d]) for d in range(3)])
                normal = pos / axes**2
                side = np.cross(ahead - behind, normal)
                if np.linalg.norm(side) > 0:
                    fade = min(1.0, (t - wavy_from_mm) / 10.0)
                    amp = wiggle * fade * 0.5 * sum(np.sin(2 * math.pi * t / lam + ph))
                    q = pos + amp * side / np.linalg.norm(side)
                    # the re-projection moves a surface point by ~1 mm (it reads the offset point's z as the
                    # surface's): a course that starts on the surface takes it from its first node, as it always
                    # has; one that reaches the surface after a lead (the RCA's arc) eases into it, without a jog
                    q = surf.point(math.atan2(q[1] / axes[1], q[0] / axes[0]), q[2], r0 + (r1 - r0) * (k / n))
                    pos = q if wavy_from_mm == 0.0 else pos + fade * (q - pos)
            node = b.add_node(pos, r0 + (r1 - r0) * (k / n), node, bid)
            nodes.append(node)
        if tip:
            ends.append((node, pts_arr[-1] - pts_arr[-2], gen))
        return nodes

    def groove(phi0: float, phi1: float, z0: float, z1: float, r: float, n: int = 24) -> list[np.ndarray]:
        return [surf.point(phi0 + (phi1 - phi0) * k / n, z0 + (z1 - z0) * k / n, r) for k in range(n + 1)]

    def side_branches(trunk: list[int], fractions: list[float], labels: list[str], sign: float, r_frac: float, gen: int) -> None:
        for f, lab in zip(fractions, labels):
            i = trunk[int(f * (len(trunk) - 1))]
            start = b.position(i)
            # project start into heart (phi, z) and run obliquely towards the apex
            phi = math.atan2(start[1] / axes[1], start[0] / axes[0])
            z = start[2]
            phi_end = phi + sign * math.radians(35.0) + jit()
            r = b.radius(i) * r_frac * rj()
            pts = groove(phi, phi_end, z, z + 0.55 * (z_apex - z), r, n=12)
            pts[0] = start
            course(i, pts, r, 0.5 * r, lab, gen)

    roots: dict[str, int] = {}
    ostia: dict[str, np.ndarray] = {}  # where the coronary arteries leave the aortic root (sinuses of Valsalva)
    if p.side in ("left", "both"):
        r_lm = p.lm_radius_mm * rj()
        phi_bif = phi_ant + jit()  # the LM bifurcates at the top of the anterior interventricular groove
        bif = surf.point(phi_bif, z_base, r_lm)
        lm_length = p.lm_length_mm * float(np.exp(rng_lm.normal(0.0, p.lm_length_jitter)))
        r_lad = p.lad_radius_mm * rj()
        r_lcx = p.lcx_radius_mm * rj() * (4.2 / 3.4 if dominance == "left" else 1.0)  # Dodge 1992
        lad_pts = [bif] + groove(phi_bif, phi_ant, z_base - 4.0, z_apex, r_lad)[1:]
        lcx_end = {"right": math.radians(80.0), "co": 0.0, "left": 0.0}[dominance]  # short of the crux: 6-8 cm
        lcx_pts = [bif] + groove(phi_bif, phi_post - lcx_end, z_base, z_base - 10.0, r_lcx)[1:]
        # the LM arrives between its branches, from its ostium in the aortic root beneath the surface
        ost = bif - lm_length * _left_main_direction(lad_pts[1] - bif, lcx_pts[1] - bif, bif / axes**2)
        ostia["left"] = ost
        bid = b.new_branch(0)
        root = b.add_node(ost, r_lm, -1, bid)
        roots["left"] = root
        lm = course(root, [ost, bif], r_lm, r_lm, "LM", 0, tip=False, wavy=False)
        b.set_branch(root, b.branch_of(lm[0]))  # the root node belongs to LM
        lad = course(lm[-1], lad_pts, r_lad, 0.45 * r_lad, "LAD", 1)
        lcx = course(lm[-1], lcx_pts, r_lcx, (0.7 if dominance == "left" else 0.45) * r_lcx, "LCx", 1,
                     tip=dominance != "left")
        side_branches(lad, [0.25, 0.5], ["D1", "D2"], +1.0, 0.6, 2)
        side_branches(lcx, [0.35, 0.7], ["OM1", "OM2"], 0.3, 0.65, 2)
        for f, lab in zip((0.15, 0.35, 0.55), SEPTAL_PERFORATORS):  # septal perforators dive into the septum
            i = lad[int(f * (len(lad) - 1))]
            start = b.position(i)
            heading = -start / np.linalg.norm(start) + np.array([0.0, 0.0, -0.7])
            r_s = 0.35 * b.radius(i) * rj()
            course(i, [start, start + 20.0 * heading / np.linalg.norm(heading)], r_s, 0.5 * r_s, lab, 2, wavy=False)
        if dominance == "left":
            crux = b.position(lcx[-1])
            r_pda = 0.8 * b.radius(lcx[-1])
            pda_pts = [crux] + groove(phi_post, phi_post + jit() * 0.5, z_base - 12.0, 0.6 * z_apex, r_pda)[1:]
            course(lcx[-1], pda_pts, r_pda, 0.45 * r_pda, "PDA", 2)
    if p.side in ("right", "both"):
        ost = aorta + np.array([-0.2 * axes[0], -0.35 * axes[1], 0.0])  # the right sinus faces forward and right
        ostia["right"] = ost
        r_rca = p.rca_radius_mm * rj() * (2.8 / 3.9 if dominance == "left" else 1.0)  # Dodge 1992
        if "left" in roots:
            vb = b.new_branch(1, "virtual")
            left = roots["left"]
            u = (ost - b.position(left)) / np.linalg.norm(ost - b.position(left))
            v1 = b.add_node(b.position(left) + 0.01 * u, 1e-3, left, vb)
            v2 = b.add_node(ost - 0.01 * u, 1e-3, v1, vb)
            start = b.add_node(ost, r_rca, v2, vb)
            gen0 = 1
        else:
            bid = b.new_branch(0)
            start = b.add_node(ost, r_rca, -1, bid)
            gen0 = 0
        # the ostium lies inside the AV ring: an arc leaves it forward, to the right and down, and enters the groove
        # along it; clockwise through the groove phi then decreases to the crux (phi_post - 360 deg)
        phi_r0 = math.radians(RCA_GROOVE_ENTRY_DEG) + jit()
        rca_end = phi_post - 2 * math.pi if dominance != "left" else 0.5 * (phi_r0 + phi_post - 2 * math.pi)
        rca_groove = groove(phi_r0, rca_end, z_base, z_base - 6.0, r_rca, n=30)
        lead_pts, lead_mm = _arc_into(rca_groove[0], rca_groove[1] - rca_groove[0], ost)
        rca = course(start, lead_pts + rca_groove[1:], r_rca, 0.7 * r_rca, "RCA", gen0, tip=dominance == "left",
                     wavy_from_mm=lead_mm)
        if gen0 == 0:
            b.set_branch(start, b.branch_of(rca[0]))
        crux = b.position(rca[-1])
        if dominance != "left":
            r_pda = 0.55 * r_rca
            pda_pts = [crux] + groove(phi_post, phi_post + jit() * 0.5, z_base - 8.0, 0.6 * z_apex, r_pda)[1:]
            course(rca[-1], pda_pts, r_pda, 0.45 * r_pda, "PDA", gen0 + 1)
            pl_pts = [crux] + groove(phi_post, phi_post - math.radians(35.0), z_base - 6.0, z_base - 16.0,
                                     0.45 * r_rca, n=10)[1:]
            course(rca[-1], pl_pts, 0.45 * r_rca, 0.3 * r_rca, "PLB", gen0 + 1)
        side_branches(rca, [0.4], ["AM"], -1.0, 0.5, gen0 + 1)

    if p.distal_iterations > 0:
        lp = LSystemParams(
            iterations=p.distal_iterations,
            length_diameter_ratio=p.distal_length_diameter_ratio,
            tortuosity_deg=p.distal_tortuosity_deg,
            min_radius_mm=p.min_radius_mm,
            step_mm=p.step_mm,
        )
        for node, direction, gen in list(ends):
            d = 2.0 * b.radius(node)
            if d / 2 < 1.5 * p.min_radius_mm:
                continue
            grow_lsystem(b, node, direction, lp, rng_distal, root_diameter_mm=d, generation_offset=gen + 1)

    tree = b.build()
    rot = heart_rotation()
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = np.asarray(p.centre_mm, dtype=float)
    tree = tree.transformed(m)  # rotation: det 1, radii unchanged
    # the catheter's way in: down the ascending aorta (patient superior) on the root's axis to the height of the
    # ostium it injects (the tree's root), where it turns into it; the left ostium lies 9-18 mm above the root's
    # centre, from which the catheter would turn back up into it by 112-125 deg
    axis_end = rot @ aorta + m[:3, 3]
    axis_end[2] = tree.positions_mm[0, 2]
    tree.metadata = normalized_metadata(
        {
            "generator": "coronary",
            "seed": int(seed),
            "params": asdict(p),
            "labels": b.labels,
            "virtual_branches": [k for k, v in b.labels.items() if v == "virtual"],
            "frame": "LPS",
            "heart_semi_axes_mm": axes.tolist(),
            "heart_centre_mm": [float(x) for x in p.centre_mm],
            "dominance": dominance,
            "feeding_path_mm": [(axis_end + [0.0, 0.0, 40.0]).tolist(), axis_end.tolist()],
            "ostia_mm": {side: (rot @ q + m[:3, 3]).tolist() for side, q in ostia.items()},
        }
    )
    return tree
