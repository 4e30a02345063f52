"""Cerebral arterial template: neck arteries, skull-base course, the Circle of Willis and cortical branches.

Frame: patient LPS, mm (+x left, +y posterior, +z superior), origin near the centre of the circle.
The brain is the ellipsoid ``BRAIN_CENTRE_MM`` / ``BRAIN_SEMI_AXES_MM`` (x ``scale``), recorded in
``metadata["brain_centre_mm"]`` and ``["brain_semi_axes_mm"]`` so a placement can register it to a CT.

Named segments (``metadata["labels"]``; ``_L`` / ``_R`` per side):

* ``CCA`` -> carotid bifurcation -> ``ICA_cervical`` -> ``ICA_petrous`` (vertical, genu, horizontal
  course anteromedially) -> ``ICA_cavernous`` (the siphon: up, forward, up and back) ->
  ``ICA_supraclinoid`` -> ICA terminus; where the ICA leaves the cavernous sinus the ophthalmic artery,
  ``OphA`` (forward through the optic canal to the orbital apex) -> ``OphA_orbital`` (over the optic nerve, along
  the orbit's medial wall and over its rim onto the forehead, ending in a sparse tree in the scalp); at the
  terminus the anterior choroidal artery, ``AChA`` (back along the optic tract to the temporal horn's choroidal
  fissure);
* ``ECA`` with ``SupThyA`` (superior thyroid, from the carotid bifurcation down to the thyroid gland), ``LingA``
  (lingual, looping down over the hyoid and forward into the tongue), ``PAA`` (posterior auricular, up behind the
  ear), ``STA`` (superficial temporal, dividing in the scalp into ``STA_frontal`` and ``STA_parietal``),
  ``OccA`` (occipital), ``FacA`` (facial), ``MaxA`` (maxillary), each continued by a small distal tree over the
  scalp / face / neck, and the middle meningeal artery:
  ``MMA`` (from the ECA's terminal division up to the foramen spinosum) -> ``MMA_dural`` (laterally over the
  floor of the middle fossa) -> ``MMA_frontal`` (up the convexity behind the coronal suture) and ``MMA_parietal``
  (back and up over the temporal squama), on the dura lining the skull, each ending in a sparse tree;
* ``VA`` (vertebral) -> ``VA_V3`` (its loop over C1) -> ``VA_V4`` -> ``BA`` (basilar), and the cerebellar arteries, which
  leave them along their course (:data:`ORIGIN_ON`): ``SCA`` (superior, from just below the basilar tip round the
  midbrain to the cerebellum's upper surface), ``AICA`` (anterior inferior, from the basilar's lower part out to the
  internal acoustic meatus and the petrosal surface), ``PICA`` (posterior inferior, from the intracranial vertebral
  artery round the medulla in its caudal and cranial loops to the suboccipital surface), each ending in a tree laid
  on the cerebellum's ellipsoid (:data:`CEREBELLUM_CENTRE_MM`, :data:`CEREBELLUM_SEMI_AXES_MM`);
* the circle: ``A1``, ``ACoA``, ``PCoA``, ``P1`` with the variants below;
* ``M1`` -> ``M2s`` / ``M2i`` (superior / inferior trunks) in the sylvian fissure -> the cortical branches'
  courses (:data:`CORTICAL_COURSES`: ``M3_frontal``, ``M3_central``, ``M3_parietal`` from the superior trunk,
  ``M3_angular``, ``M3_temporal_posterior`` from the inferior, ``M3_temporal_anterior`` from the M1's
  bifurcation, as the anterior temporal artery often leaves the M1 early), each climbing out of the
  fissure onto the lateral convexity and fanning over its part of it (M3-M4), ending in a cortical tree;
  ``A2`` -> ``A3`` (pericallosal, along the corpus callosum) -> cortical trees on the medial surface; ``P2`` ->
  cortical trees over the occipital pole.

Diameters and lengths are compared with published morphometry segment by segment in docs/vessels.md §3
(CCA, ICA, MCA, ACA A1/A2, PCoA, PCA P1/P2, vertebral, basilar and superior cerebellar: CTA, MRA, ultrasound and
cadaver studies; the ECA branches, A3, ACoA, V3 and the inferior cerebellar arteries are typical values without a
usable source). Each segment
tapers linearly between its two diameters, with log-normal jitter.
Every segment is a smooth curve (cubic spline through its via points, tangent-continuous with its
parent) plus a random low-frequency bend of relative amplitude ``template_tortuosity``.

The arteries form cycles; the tree is a spanning tree rooted at the proximal left CCA. The other
inflows (right CCA, both vertebrals) hang from the root on ``virtual`` connectors (radius 1 um,
excluded from morphometrics), so every artery runs in the direction of flow from its inflow. A
segment that closes a cycle is a leaf whose last node coincides with the junction it joins.
``injection`` builds only the territory of a selective catheter injection (``ICA_L``, ``VA_R``,
``CCA_L``...: :data:`INJECTIONS`), rooted at the catheter tip.

Variants are drawn per side from a dedicated random stream (independent of geometry):

* ``A1``: hypoplastic (radius x 0.4) or absent;
* ``P1`` (fetal PCA): partial fetal = hypoplastic P1 with a PCoA as wide as P2, full fetal =
  absent P1 (PCoA as wide as P2);
* ``PCoA`` (only when not fetal): hypoplastic (x 0.4) or absent;
* ``ACoA``: absent (only allowed when both A1 are present; otherwise forced present).

``metadata["variants"]`` records the draw, e.g. ``{"A1_L": "normal", "P1_R": "fetal_full", ...}``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from vessel_models.courses import (
    DURA_MM,
    MIDLINE_GAP_MM,
    SCALP_MM,
    TENTORIUM_MM,
    VIRTUAL_RADIUS_MM,
    ellipsoid_normal,
    lay_on_surface,
    lift_over,
    smooth_curve,
    surface_point,
)
from vessel_models.lsystem import LSystemParams, grow_lsystem, perpendicular
from vessel_models.tree import TreeBuilder, VesselInputError, VesselTree, check_finite_params, with_overrides
from vessel_models.veins import add_cerebral_veins

__all__ = ["WillisParams", "generate_willis", "draw_variants", "SEGMENT_DIAMETERS_MM", "BRAIN_CENTRE_MM",
           "BRAIN_SEMI_AXES_MM", "CEREBELLUM_CENTRE_MM", "CEREBELLUM_SEMI_AXES_MM"]

#: The middle cerebral artery's cortical branches (M3-M4): from the end of their M2 trunk deep in the sylvian fissure
#: (the anterior temporal branch: from the M1's bifurcation) each climbs to the lateral convexity by its first via
#: point (the fissure's opening) and runs on there, laid ``cortical_depth_mm`` under the brain ellipsoid, to its part
#: of the convexity, where its cortical tree grows. The two trunks' own trees, before 2026-12-07, covered the front
#: third of the hemisphere in a lateral view.
CORTICAL_COURSES = frozenset({"M3_frontal", "M3_central", "M3_parietal", "M3_angular", "M3_temporal_posterior",
                              "M3_temporal_anterior"})
#: Segment diameters (mm) at the start and end of each segment, before jitter and variants.
SEGMENT_DIAMETERS_MM: dict[str, tuple[float, float]] = {
    "CCA": (6.5, 6.3),
    "ICA_cervical": (4.8, 4.6),
    "ICA_petrous": (4.6, 4.6),
    "ICA_cavernous": (5.0, 4.4),
    "ICA_supraclinoid": (4.1, 3.6),
    "ECA": (4.2, 3.4),
    # after the facial, occipital and lingual arteries have left it: Murray's law from its daughters (the superficial
    # temporal, maxillary and middle meningeal) gives 3.2 mm; with the ECA's own diameters, 4.2 -> 3.4 again, the
    # distal ECA was the widest vessel of an external carotid run
    "ECA_distal": (3.2, 3.0),
    "STA": (2.2, 1.8),
    "STA_frontal": (1.6, 1.2),
    "STA_parietal": (1.5, 1.1),
    "OccA": (2.0, 1.7),
    "FacA": (2.3, 1.9),
    "MaxA": (2.6, 2.1),
    "MMA": (1.8, 1.6),
    "MMA_dural": (1.6, 1.5),
    "MMA_frontal": (1.4, 1.0),
    "MMA_parietal": (1.3, 0.9),
    "SupThyA": (1.8, 1.5),
    "LingA": (2.0, 1.7),
    "PAA": (1.6, 1.3),
    "OphA": (1.4, 1.3),
    "OphA_orbital": (1.3, 1.0),
    "AChA": (0.9, 0.7),
    # the cerebellar arteries: the superior's anterior pontomesencephalic and cerebellomesencephalic calibres
    # (Ballesteros-Acuna 2021, 93 cadaver arteries); the inferiors' typical values (no source with an SD found)
    "SCA": (1.46, 1.25),
    "AICA": (1.1, 0.9),
    "PICA": (1.5, 1.2),
    "VA": (3.9, 3.5),
    "VA_V3": (3.5, 3.2),
    "VA_V4": (3.2, 2.8),
    "BA": (3.6, 3.1),
    "M1": (3.1, 2.9),
    "M2s": (2.4, 2.1),
    "M2i": (2.4, 2.1),
    **dict.fromkeys(sorted(CORTICAL_COURSES), (1.6, 1.2)),
    "A1": (2.3, 2.2),
    "A2": (2.1, 2.0),
    "A3": (1.9, 1.6),
    "P1": (2.1, 2.1),
    "P2": (2.0, 1.8),
    "ACoA": (1.5, 1.5),
    "PCoA": (1.2, 1.2),
}
#: Brain ellipsoid of the template (scale 1): centre and semi-axes (x: left, y: posterior, z: superior), mm.
BRAIN_CENTRE_MM = (0.0, 8.0, 22.0)
BRAIN_SEMI_AXES_MM = (66.0, 84.0, 58.0)
#: The cerebellum's ellipsoid (scale 1, mm), on which the cerebellar arteries' trees are laid: in the posterior fossa
#: behind the brainstem (the basilar artery runs 36-44 mm in front of its centre), below the tentorium (the transverse
#: sinuses of :mod:`vessel_models.veins` run above its trees) and between the sigmoid sinuses, under the occipital
#: lobes (its back pole 13 mm behind the brain ellipsoid at its height); 92 x 52 x 44 mm (the adult cerebellum about
#: 100 mm across, 50-60 mm front to back, 50 mm high).
CEREBELLUM_CENTRE_MM = (0.0, 50.0, -22.0)
CEREBELLUM_SEMI_AXES_MM = (46.0, 26.0, 22.0)
#: The cerebellar arteries: below the tentorium, their trees on the cerebellum (:data:`CEREBELLUM_CENTRE_MM`).
CEREBELLAR = ("SCA", "AICA", "PICA")
#: Where each distal (cortical / scalp) tree grows and which surface it is laid on (the ophthalmic artery's ends
#: leave the orbit over its rim onto the forehead: the supraorbital and supratrochlear arteries).
DISTAL_TREES = {
    **dict.fromkeys(sorted(CORTICAL_COURSES), "convexity"),
    "P2": "cortex", "A3": "medial", "A2": "medial",
    "OccA": "scalp", "FacA": "free", "MaxA": "face", "MMA_frontal": "dura", "MMA_parietal": "dura",
    "STA_frontal": "scalp", "STA_parietal": "scalp", "OphA_orbital": "scalp", "LingA": "face", "SupThyA": "free",
    "PAA": "scalp", **dict.fromkeys(CEREBELLAR, "cerebellum"),
}
#: The surfaces of :data:`DISTAL_TREES` on the brain above the tentorium: trees laid there keep off the cerebellum's
#: place (:func:`~vessel_models.courses.lift_over`).
SUPRATENTORIAL = ("cortex", "convexity", "medial")
#: L-system parameters of a distal tree that differ from the cortical trees': the middle meningeal and superficial
#: temporal arteries' frontal and parietal branches, the ophthalmic, lingual, superior thyroid and posterior auricular
#: arteries end in a few long twigs, not a cortical tree's hundreds.
DISTAL_LSYSTEM = {**{k: {"iterations": 3, "length_diameter_ratio": 14.0}
                     for k in ("MMA_frontal", "MMA_parietal", "STA_frontal", "STA_parietal", "OphA_orbital", "PAA")},
                  # the tongue and the thyroid's upper pole are a few centimetres across
                  **{k: {"iterations": 2, "length_diameter_ratio": 10.0} for k in ("LingA", "SupThyA")},
                  # each of the middle cerebral artery's cortical branches covers a few centimetres of the convexity, each
                  # cerebellar artery's trunk a few of the cerebellum's surface
                  **{k: {"length_diameter_ratio": 9.0} for k in (*CORTICAL_COURSES, *CEREBELLAR)}}
#: Smoothing passes of a cortical course's climb onto the cortex (:func:`_climb_onto_layer`).
CLIMB_SMOOTHING_PASSES = 6
#: Courses that branch on their way as well: a second tree, 45 deg off the course at its last via point (a cortical
#: course's on the cortex; a cerebellar artery's where its trunks part: the superior's rostral and caudal trunks at the
#: cerebellomesencephalic fissure, the posterior inferior's vermian and hemispheric branches over the tonsil, the
#: anterior inferior's at the flocculus). The side tree starts this fraction of the course's diameter there (a branch,
#: not a continuation: about two such daughters of equal size by Murray's law).
SIDE_TREE_DIAMETER = 0.75
#: Segments whose course is put on a layer around the brain (mm outside the brain ellipsoid): the middle meningeal
#: artery's on the dura lining the skull, the superficial temporal artery's branches in the scalp.
ON_LAYER_MM = {**{k: DURA_MM for k in ("MMA_dural", "MMA_frontal", "MMA_parietal")},
               **{k: SCALP_MM for k in ("STA_frontal", "STA_parietal")}}
#: Segments added after the template's first version, each group with the seed's child stream it is drawn from
#: (:func:`generate_willis`): they and the junctions only they use take their draws from it, so each seed's other
#: vessels stayed as they were. Stream 4: the middle meningeal artery and the superficial temporal artery's branches;
#: stream 5, added after them: the ophthalmic, anterior choroidal, superior thyroid, lingual and posterior auricular
#: arteries; stream 6: the middle cerebral artery's cortical courses (all 2026-12-07; the last took the M2 trunks'
#: trees, so the distal trees drawn after those from the shared stream changed); stream 7: the cerebellar arteries
#: (2026-12-07).
OWN_STREAM: dict[str, int] = {**dict.fromkeys(("MMA", *ON_LAYER_MM), 4),
                              **dict.fromkeys(("OphA", "OphA_orbital", "AChA", "SupThyA", "LingA", "PAA"), 5),
                              **dict.fromkeys(CORTICAL_COURSES, 6),
                              **dict.fromkeys(CEREBELLAR, 7)}
#: Segments that leave their parent along its course rather than at a junction: ``key -> (parent, mm)``, the origin that
#: far along the parent from its start (from its end where negative; start and end as the parent is defined, also where
#: a selective injection fills it from its end). The superior cerebellar artery leaves the basilar artery just below its
#: tip (0.7-4.5 mm below the posterior cerebral artery, 150 cadaver arteries; 27.2 +- 3.1 mm above the vertebrobasilar
#: junction, Ballesteros-Acuna 2021), the anterior inferior its lower part (11.8 mm above the junction on average,
#: Habibi 2012, 31 cadavers), the posterior inferior the intracranial vertebral artery 1-2 cm below the junction
#: (``{s}``: its side); the offsets x ``scale``, kept within the parent. Their first junction (``SCAo``...) is the
#: parent's node there.
ORIGIN_ON = {"SCA": ("BA", -2.5), "AICA": ("BA", 11.8), "PICA": ("VA_V4_{s}", -15.0)}
#: Courses with a side tree (:data:`SIDE_TREE_DIAMETER`).
SIDE_TREES = CORTICAL_COURSES | set(CEREBELLAR)
#: The external carotid's segments (``external_carotid=False`` leaves them out).
EXTERNAL_CAROTID = ("ECA", "ECA_distal", "STA", "OccA", "FacA", "MaxA", "MMA", "MMA_dural", "MMA_frontal", "MMA_parietal",
                    "STA_frontal", "STA_parietal", "SupThyA", "LingA", "PAA")
HYPOPLASTIC_FACTOR = 0.4
#: Segments a selective injection fills against their flow from the far end (the other vertebral artery's intracranial
#: segment, by reflux from the vertebrobasilar junction): filled so, they leave that junction at an angle, not on along
#: the injected artery (tangent to it, the refluxed segment first rose 0.5-1.5 mm above the junction and hooked back).
REFLUX = frozenset({"VA_V4"})
#: Segments that leave their junction at an angle instead of tangent-continuous with the parent: the A1
#: turns medially off the ICA terminus (a T-shaped bifurcation), not on along the supraclinoid ICA; the A2
#: turns up into the interhemispheric fissure at the ACoA, not on across the midline along the A1; side branches
#: leave their trunk's wall: the ophthalmic forwards off the siphon's upward turn, the anterior choroidal back off
#: the terminus, the superior thyroid down off the bifurcation, the lingual forwards off the rising ECA, the cerebellar
#: arteries off the side of the basilar and vertebral arteries.
ANGLED_STARTS = frozenset({"A1", "A2", "OphA", "AChA", "SupThyA", "LingA", *ORIGIN_ON})
#: Segments in the interhemispheric fissure: their bend stays in the sagittal plane and their junctions in
#: their own hemisphere (the falx parts the two anterior cerebral arteries above the corpus callosum).
INTERHEMISPHERIC = frozenset({"A2", "A3"})
SAGITTAL_NORMAL = np.array([1.0, 0.0, 0.0])
#: Least distance (mm) of the A1-ACoA-A2 junction from the midline: an anterior communicating artery of at
#: least 1 mm, where the jitter of the junctions would put the two junctions on one side.
ACOA_HALF_LENGTH_MIN_MM = 0.5


@dataclass(frozen=True)
class WillisParams:
    """Parameters of the cerebral template (probabilities per side, lengths mm).

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
    template_tortuosity : float
        Amplitude of the random bend of every named segment, as a fraction of its chord.
    template_wiggle_mm : float
        Amplitude (mm) of the undulation on top of that bend, about every 20 mm of the chord
        (:func:`vessel_models.courses.smooth_curve`).
    distal_iterations : int
        L-system iterations of the cortical / scalp trees (0 = none).
    distal_length_diameter_ratio, distal_tortuosity_deg, min_radius_mm : float
        L-system parameters of the distal trees (``min_radius_mm`` 0.2: smallest vessels 0.4 mm).
    cortical_depth_mm : float
        Depth below the brain ellipsoid at which cortical branches run.
    external_carotid : bool
        Include the external carotids and their branches.
    injection : str
        ``"all"`` (an arch injection fills everything) or a selective injection site of
        :data:`INJECTIONS` (``CCA_L``, ``ICA_R``, ``ECA_L``, ``VA_R``...): only its territory is built,
        rooted at the catheter tip.
    veins : bool
        Add the venous template (:mod:`vessel_models.veins`: dural sinuses, cortical veins, internal
        jugulars) for a venous phase; every injection drains into all of it (a simplification). On by
        default: a still frame shows the arterial phase (veins and blush empty), a sequence goes
        arterial -> capillary -> venous; ``False`` gives the arteries alone.
    vein_iterations : int
        L-system iterations of each cortical vein tree.
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
    template_tortuosity: float = 0.18
    template_wiggle_mm: float = 2.5
    distal_iterations: int = 8
    distal_length_diameter_ratio: float = 6.0
    distal_tortuosity_deg: float = 40.0
    min_radius_mm: float = 0.2
    cortical_depth_mm: float = 3.0
    external_carotid: bool = True
    injection: str = "all"
    veins: bool = True
    vein_iterations: int = 5
    step_mm: float = 1.5

    def validate(self) -> "WillisParams":
        """Raise :class:`VesselInputError` naming the first bad field; return self."""
        check_finite_params(self, "cow")
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
            ("template_tortuosity", 0 <= self.template_tortuosity <= 0.5),
            ("template_wiggle_mm", 0 <= self.template_wiggle_mm <= 10),
            ("distal_iterations", 0 <= self.distal_iterations <= 8),
            ("vein_iterations", 0 <= self.vein_iterations <= 7),
            ("distal_length_diameter_ratio", self.distal_length_diameter_ratio > 0),
            ("distal_tortuosity_deg", 0 <= self.distal_tortuosity_deg < 90),
            ("min_radius_mm", self.min_radius_mm > 0),
            ("cortical_depth_mm", 0 <= self.cortical_depth_mm < 30),
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


def _template(params: WillisParams, rng: np.random.Generator,
              rng_own: dict[int, np.random.Generator]) -> tuple[dict[str, np.ndarray], dict[str, tuple]]:
    """Junction positions and segments ``name -> (junction_a, junction_b, [via points], diameter key)``
    (flow from ``a`` to ``b`` for the inflow trunks); the junctions of :data:`OWN_STREAM`'s arteries jittered from
    their stream in ``rng_own``."""
    j: dict[str, np.ndarray] = {}
    segs: dict[str, tuple] = {}
    for s, sx in (("L", 1.0), ("R", -1.0)):
        def pt(x: float, y: float, z: float, sx: float = sx) -> np.ndarray:
            return np.array([x * sx, y, z])

        j.update({
            f"CCAprox_{s}": pt(24, -6, -150), f"CB_{s}": pt(22, -2, -114), f"ICAskull_{s}": pt(17, 4, -38),
            f"ICAlac_{s}": pt(13, -10, -22), f"ICAclin_{s}": pt(14, -18, -5), f"ICAT_{s}": pt(13, -8, 0),
            f"ECAmid_{s}": pt(25, -11, -86), f"ECAsplit_{s}": pt(27, -12, -62),
            f"STAend_{s}": pt(62, -8, 25), f"STAfend_{s}": pt(40, -55, 58), f"STApend_{s}": pt(39, 38, 76),
            f"OccAend_{s}": pt(36, 72, -18), f"FacAend_{s}": pt(36, -62, -52),
            f"MaxAend_{s}": pt(14, -42, -48), f"MMAfs_{s}": pt(26, -2, -31), f"MMAdiv_{s}": pt(50, -10, -14),
            f"MMAfend_{s}": pt(41, -33, 57), f"MMApend_{s}": pt(59, 46, 26),
            f"OphAapex_{s}": pt(20, -40, -11), f"OphAend_{s}": pt(15, -84, 12), f"AChAend_{s}": pt(22, 16, -2),
            f"M3fr_{s}": pt(34, -60, 38), f"M3ce_{s}": pt(44, 8, 66), f"M3pa_{s}": pt(45, 35, 60),
            f"M3an_{s}": pt(40, 55, 35), f"M3tp_{s}": pt(45, 60, 0), f"M3ta_{s}": pt(44, -30, -12),
            f"SupThyAend_{s}": pt(14, -18, -146), f"LingAend_{s}": pt(6, -58, -80), f"PAAend_{s}": pt(64, 24, -14),
            f"SCAend_{s}": pt(16, 50, 0), f"AICAend_{s}": pt(36, 40, -32), f"PICAend_{s}": pt(12, 70, -50),
            f"VAprox_{s}": pt(30, 12, -150), f"VAc1_{s}": pt(26, 14, -70), f"VAdura_{s}": pt(14, 30, -58),
            f"ACAJ_{s}": pt(1.6, -14, 4), f"A2end_{s}": pt(2.5, -33, 16), f"A3end_{s}": pt(2.5, 30, 44),
            f"M1J_{s}": pt(30, -6, 3), f"M2send_{s}": pt(37, 2, 18), f"M2iend_{s}": pt(39, 10, 6),
            f"PJ_{s}": pt(7, 4, -1), f"P2end_{s}": pt(22, 40, 8),
        })
        for name, a, b, vias, key in (
            ("CCA", "CCAprox", "CB", [], "CCA"),
            ("ICA_cervical", "CB", "ICAskull", [pt(20, 3, -70)], "ICA_cervical"),
            ("ICA_petrous", "ICAskull", "ICAlac", [pt(18, 3, -29)], "ICA_petrous"),
            ("ICA_cavernous", "ICAlac", "ICAclin", [pt(14, -13, -16), pt(14.5, -19, -12)], "ICA_cavernous"),
            ("ICA_supraclinoid", "ICAclin", "ICAT", [pt(13.5, -14, -1)], "ICA_supraclinoid"),
            ("ECA", "CB", "ECAmid", [], "ECA"),
            ("ECA_distal", "ECAmid", "ECAsplit", [], "ECA_distal"),
            ("FacA", "ECAmid", "FacAend", [pt(38, -30, -92), pt(38, -52, -72)], "FacA"),
            ("OccA", "ECAmid", "OccAend", [pt(36, 15, -76), pt(36, 45, -55)], "OccA"),
            ("STA", "ECAsplit", "STAend", [pt(50, 0, -45), pt(60, -2, -15)], "STA"),
            ("STA_frontal", "STAend", "STAfend", [pt(64, -30, 45)], "STA_frontal"),
            ("STA_parietal", "STAend", "STApend", [pt(65, 10, 58)], "STA_parietal"),
            ("MaxA", "ECAsplit", "MaxAend", [pt(22, -28, -62)], "MaxA"),
            ("MMA", "ECAsplit", "MMAfs", [pt(27, -7, -47)], "MMA"),
            ("MMA_dural", "MMAfs", "MMAdiv", [pt(38, -5, -25)], "MMA_dural"),
            ("MMA_frontal", "MMAdiv", "MMAfend", [pt(57, -29, 9)], "MMA_frontal"),
            ("MMA_parietal", "MMAdiv", "MMApend", [pt(61, 10, -1)], "MMA_parietal"),
            ("SupThyA", "CB", "SupThyAend", [pt(21, -12, -120)], "SupThyA"),
            ("LingA", "ECAmid", "LingAend", [pt(20, -20, -92), pt(14, -34, -88)], "LingA"),
            ("PAA", "ECAsplit", "PAAend", [pt(40, 8, -46)], "PAA"),
            ("OphA", "ICAclin", "OphAapex", [pt(16, -26, -6)], "OphA"),
            ("OphA_orbital", "OphAapex", "OphAend", [pt(22, -50, -10), pt(20, -64, -7), pt(16, -76, -5)],
             "OphA_orbital"),
            ("AChA", "ICAT", "AChAend", [pt(9, 0, -3), pt(15, 8, -4)], "AChA"),
            ("VA", "VAprox", "VAc1", [pt(28, 13, -110)], "VA"),
            ("VA_V3", "VAc1", "VAdura", [pt(34, 22, -66), pt(24, 34, -62)], "VA_V3"),
            ("VA_V4", "VAdura", "BAprox", [pt(8, 24, -46)], "VA_V4"),
            ("A1", "ICAT", "ACAJ", [], "A1"),
            ("A2", "ACAJ", "A2end", [pt(2, -27, 8)], "A2"),
            ("A3", "A2end", "A3end", [pt(2.5, -36, 38), pt(2.5, -16, 50), pt(2.5, 10, 51)], "A3"),
            ("M1", "ICAT", "M1J", [pt(22, -7, 1)], "M1"),
            ("M2s", "M1J", "M2send", [pt(36, -3, 10)], "M2s"),
            ("M2i", "M1J", "M2iend", [pt(38, 0, 2)], "M2i"),
            ("M3_frontal", "M2send", "M3fr", [pt(60, -25, 25), pt(50, -45, 32)], "M3_frontal"),
            ("M3_central", "M2send", "M3ce", [pt(62, -2, 30), pt(55, 4, 50)], "M3_central"),
            ("M3_parietal", "M2send", "M3pa", [pt(62, 5, 28), pt(55, 20, 48)], "M3_parietal"),
            ("M3_angular", "M2iend", "M3an", [pt(62, 15, 15), pt(55, 35, 28)], "M3_angular"),
            ("M3_temporal_posterior", "M2iend", "M3tp", [pt(62, 15, 0), pt(58, 35, -2)], "M3_temporal_posterior"),
            ("M3_temporal_anterior", "M1J", "M3ta", [pt(60, -5, -8), pt(52, -20, -12)], "M3_temporal_anterior"),
            # round the midbrain below the posterior cerebral artery to the cerebellum's upper surface
            ("SCA", "SCAo", "SCAend", [pt(11, 8, -9), pt(18, 24, -9), pt(15, 40, -7)], "SCA"),
            # back and out to the internal acoustic meatus, its loop there, onto the cerebellum's petrosal surface
            ("AICA", "AICAo", "AICAend", [pt(12, 15, -21), pt(22, 20, -19), pt(28, 36, -27)], "AICA"),
            # round the medulla, down in its caudal loop by the foramen magnum, up over the tonsil in its cranial loop,
            # then back and down onto the cerebellum's suboccipital surface
            ("PICA", "PICAo", "PICAend", [pt(12, 28, -48), pt(11, 38, -55), pt(9, 48, -38)], "PICA"),
            ("PCoA", "ICAT", "PJ", [], "PCoA"),
            ("P1", "BAT", "PJ", [], "P1"),
            ("P2", "PJ", "P2end", [pt(18, 22, 0)], "P2"),
        ):
            ja = a if a.startswith("BA") else f"{a}_{s}"
            jb = b if b.startswith("BA") else f"{b}_{s}"
            segs[f"{name}_{s}"] = (ja, jb, vias, key)
    j["BAprox"] = np.array([0.0, 14.0, -30.0])
    j["BAT"] = np.array([0.0, 6.0, -3.0])
    segs["BA"] = ("BAprox", "BAT", [np.array([0.5, 12.0, -16.0])], "BA")
    segs["ACoA"] = ("ACAJ_L", "ACAJ_R", [], "ACoA")
    others = {k for a, b, _, key in segs.values() if key not in OWN_STREAM for k in (a, b)}
    own_stream = {k: OWN_STREAM[key] for a, b, _, key in segs.values() if key in OWN_STREAM for k in (a, b)}
    for k in sorted(j):
        r = rng if k in others else rng_own[own_stream[k]]
        j[k] = j[k] * params.scale + (r.normal(0.0, params.position_jitter_mm, 3) if params.position_jitter_mm else 0.0)
    for s, sx in (("L", 1.0), ("R", -1.0)):  # the jitter keeps the fissure's junctions on their side
        for k, least in ((f"ACAJ_{s}", ACOA_HALF_LENGTH_MIN_MM), (f"A2end_{s}", MIDLINE_GAP_MM),
                         (f"A3end_{s}", MIDLINE_GAP_MM)):
            j[k][0] = sx * max(sx * j[k][0], least)
    layer_of = {k: ON_LAYER_MM[key] for a, b, _, key in segs.values() if key in ON_LAYER_MM for k in (a, b)}
    cortex = -params.cortical_depth_mm  # a cortical course's via points and end lie on the cortex, its start deep
    layer_of.update({b: cortex for _, b, _, key in segs.values() if key in CORTICAL_COURSES})
    for k, layer in layer_of.items():  # the junctions of a course on a layer lie on it
        j[k] = _on_layer(j[k], params.scale, layer)
    for _, b, _, key in segs.values():  # a cerebellar artery ends on the cerebellum's cortex
        if key in CEREBELLAR:
            j[b] = _on_layer(j[b], params.scale, cortex, CEREBELLUM_CENTRE_MM, CEREBELLUM_SEMI_AXES_MM)
    segs = {n: (a, b, [_on_layer(v * params.scale, params.scale, cortex) if key in CORTICAL_COURSES
                       else v * params.scale for v in vias], key) for n, (a, b, vias, key) in segs.items()}
    if not params.external_carotid:
        segs = {n: v for n, v in segs.items() if v[3] not in EXTERNAL_CAROTID}
    return j, segs


def _on_layer(point: np.ndarray, scale: float, outside_mm: float,
              centre_mm: tuple[float, float, float] = BRAIN_CENTRE_MM,
              axes_mm: tuple[float, float, float] = BRAIN_SEMI_AXES_MM) -> np.ndarray:
    """``point`` moved along the ray from the ellipsoid's centre onto the layer ``outside_mm`` (x ``scale``) outside
    the ellipsoid ``centre_mm`` / ``axes_mm`` (scale 1; default the brain's) of ``scale`` (the dura:
    :data:`~vessel_models.courses.DURA_MM`; the scalp: :data:`~vessel_models.courses.SCALP_MM`; the cortex: minus
    the cortical depth)."""
    axes = np.asarray(axes_mm) * scale
    return surface_point(point, np.asarray(centre_mm) * scale, axes + outside_mm * scale, 0.0)


def _climb_onto_layer(start: np.ndarray, nodes: np.ndarray, exit_mm: np.ndarray, scale: float, outside_mm: float,
                      step_mm: float) -> np.ndarray:
    """A course's ``nodes`` (N, 3; after its ``start``) moved onto the layer ``outside_mm`` around the brain
    (:func:`_on_layer`) from the node nearest ``exit_mm`` on, and before it by a weight rising smoothly
    (``3 w^2 - 2 w^3`` of the path's fraction) from 0 at its start: a branch climbing out of a fissure to the surface,
    then bent and undulating along it. Where the spline runs along the ray from the brain's centre the projection
    packs its nodes and folds (edges of 0.05 mm turning by 150 deg): the moved path is resampled every ``step_mm``
    and smoothed (:data:`CLIMB_SMOOTHING_PASSES` of ``(1, 2, 1) / 4``; on the cortex it moves by well under a mm)."""
    path = np.vstack([start, nodes])
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))]
    w = np.clip(arc / max(arc[np.argmin(np.linalg.norm(path - exit_mm, axis=1))], 1e-9), 0.0, 1.0)
    w = (3.0 - 2.0 * w) * w**2
    path = path + w[:, None] * (np.array([_on_layer(q, scale, outside_mm) for q in path]) - path)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))]
    targets = np.linspace(0.0, arc[-1], max(2, int(np.ceil(arc[-1] / step_mm))) + 1)
    path = np.stack([np.interp(targets, arc, path[:, k]) for k in range(3)], axis=1)
    for _ in range(CLIMB_SMOOTHING_PASSES):  # the ends stay
        path[1:-1] = 0.25 * path[:-2] + 0.5 * path[1:-1] + 0.25 * path[2:]
    return path[1:]


def _diameters(params: WillisParams, variants: dict[str, str], rng: np.random.Generator,
               rng_own: dict[int, np.random.Generator], segs: dict[str, tuple]) -> dict[str, tuple[float, float]]:
    """(start, end) diameter of every segment, mm: published values, jitter (:data:`OWN_STREAM`'s from their stream in
    ``rng_own``), variants."""
    out: dict[str, tuple[float, float]] = {}
    for name in sorted(segs):
        r = rng_own[OWN_STREAM[segs[name][3]]] if segs[name][3] in OWN_STREAM else rng
        f = params.scale * float(np.exp(r.normal(0.0, params.radius_jitter)))
        d0, d1 = SEGMENT_DIAMETERS_MM[segs[name][3]]
        out[name] = (d0 * f, d1 * f)
    for s in ("L", "R"):
        if variants[f"A1_{s}"] == "hypoplastic":
            out[f"A1_{s}"] = tuple(x * HYPOPLASTIC_FACTOR for x in out[f"A1_{s}"])
        if variants[f"P1_{s}"] == "fetal_partial":
            out[f"P1_{s}"] = tuple(x * HYPOPLASTIC_FACTOR for x in out[f"P1_{s}"])
        if variants[f"P1_{s}"] != "normal":
            out[f"PCoA_{s}"] = out[f"P2_{s}"]
        if variants[f"PCoA_{s}"] == "hypoplastic":
            out[f"PCoA_{s}"] = tuple(x * HYPOPLASTIC_FACTOR for x in out[f"PCoA_{s}"])
    return out


#: Length (mm) of the feeding path below a CCA or VA injection's root, along the artery's own axis: the template draws
#: these arteries from 150 mm below the circle (their origins at the arch and the subclavian lie lower), and a catheter
#: in them comes up that way, through the labelled arch branches where the CT has them (ddsa_sim's catheter route).
FEEDING_RUN_MM = 40.0
#: Length (mm) of the injected artery over which the direction it leaves its root is read.
FEEDING_AXIS_MM = 10.0
#: A selective internal or external carotid injection's catheter sits this far (mm, x ``scale``) up the injected
#: artery from the carotid bifurcation, as in a diagnostic run (typical placements, not from a source): in the cervical
#: ICA at about C2, past the bulb; in the ECA's first centimetre. The injected tree starts there and the artery below
#: it is the catheter's way in, unfilled (in a CCA injection the catheter, in the CCA, fills both).
CATHETER_UP_MM = {"ICA": 30.0, "ECA": 10.0}
#: Selective injection sites: the segment the catheter tip sits in, then the segments it feeds (per
#: side ``{s}``, the other side ``{o}``); see :func:`_territory` for the variant-dependent parts.
INJECTIONS: dict[str, tuple[str, ...]] = {}
for _s, _o in (("L", "R"), ("R", "L")):
    _ica = tuple(f"{n}_{_s}" for n in ("ICA_cervical", "ICA_petrous", "ICA_cavernous", "ICA_supraclinoid", "A1",
                                       "A2", "A3", "M1", "M2s", "M2i", *sorted(CORTICAL_COURSES), "OphA",
                                       "OphA_orbital", "AChA"))
    _eca = tuple(f"{n}_{_s}" for n in EXTERNAL_CAROTID)  # the catheter tip in its first, the ECA
    INJECTIONS[f"ICA_{_s}"] = _ica
    # not the superior thyroid artery: it leaves at the bifurcation, below the catheter (CATHETER_UP_MM)
    INJECTIONS[f"ECA_{_s}"] = tuple(n for n in _eca if not n.startswith("SupThyA"))
    INJECTIONS[f"CCA_{_s}"] = (f"CCA_{_s}",) + _ica + _eca
    # and down the other vertebral artery's intracranial segment by reflux, into its posterior inferior cerebellar
    # artery: a run of the dominant vertebral artery often shows both (:func:`_territory`)
    INJECTIONS[f"VA_{_s}"] = (f"VA_{_s}", f"VA_V3_{_s}", f"VA_V4_{_s}", "BA", "P1_L", "P1_R", "P2_L", "P2_R",
                              f"PICA_{_s}", "AICA_L", "AICA_R", "SCA_L", "SCA_R", f"VA_V4_{_o}", f"PICA_{_o}")


def _feeding_path(injection: str, junctions: dict[str, np.ndarray], tree: VesselTree,
                  way_in: list[list[float]]) -> list[list[float]]:
    """The catheter's way in to a selective injection's root (template mm, upstream first, ending at the root): an ICA
    or ECA injection through its common carotid from the CCA's origin and on up the injected artery to the root, along
    ``way_in`` (the bifurcation, then the artery's nodes below the root: :data:`CATHETER_UP_MM`); a CCA or VA injection
    on :data:`FEEDING_RUN_MM` below the root, the way the artery leaves it (its first :data:`FEEDING_AXIS_MM`). An arch
    injection (``all``): none."""
    if injection == "all":
        return []
    if injection[:3] in CATHETER_UP_MM:
        return [junctions[f"CCAprox_{injection[-1]}"].tolist(), *way_in]
    root = tree.positions_mm[0]
    return [(root - FEEDING_RUN_MM * tree.root_direction(FEEDING_AXIS_MM)).tolist(), root.tolist()]


def _territory(injection: str, present: dict[str, tuple], variants: dict[str, str],
               diameters: dict[str, tuple[float, float]]) -> dict[str, tuple]:
    """The segments a selective injection fills (:data:`INJECTIONS`), with the variants' detours: an
    ICA injection also fills the PCoA and P2 of a fetal PCA, and across the ACoA the A2/A3 of the other
    side when that side's A1 is absent; a vertebral injection leaves out the P2 of a full fetal PCA, and refluxes into
    the other vertebral artery only from the dominant side (its intracranial segment at least as wide as the other's:
    ``diameters``); from the other, the dominant one's unopacified inflow washes it out at the junction."""
    if injection not in INJECTIONS:
        raise VesselInputError(f"cow parameter injection={injection!r}: use all or one of {', '.join(INJECTIONS)}")
    names = set(INJECTIONS[injection])
    for s, o in (("L", "R"), ("R", "L")):
        if f"ICA_cervical_{s}" in names:
            if variants[f"P1_{s}"] != "normal":
                names |= {f"PCoA_{s}", f"P2_{s}"}
            if variants[f"A1_{o}"] == "absent":
                names |= {"ACoA", f"A2_{o}", f"A3_{o}"}
        if injection.startswith("VA") and variants[f"P1_{s}"] == "fetal_full":
            names.discard(f"P2_{s}")
        if injection == f"VA_{s}" and diameters[f"VA_V4_{o}"][0] > diameters[f"VA_V4_{s}"][0]:
            names -= {f"VA_V4_{o}", f"PICA_{o}"}
    return {n: seg for n, seg in present.items() if n in names}


def generate_willis(seed: int, params: WillisParams | None = None, **overrides: Any) -> VesselTree:
    """Generate the cerebral arterial template with variants and cortical / scalp trees.

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
        Rooted at the proximal left CCA (or in the injected segment); ``metadata["labels"]`` names the
        template segments, ``["variants"]`` the variant draw, ``["brain_centre_mm"]`` and
        ``["brain_semi_axes_mm"]`` the brain ellipsoid the template was drawn in.
    """
    from vessel_models.io import normalized_metadata

    p = with_overrides(params or WillisParams(), overrides, "cow").validate()
    ss = np.random.SeedSequence(int(seed))
    streams = ss.spawn(1 + max(OWN_STREAM.values()))  # the fourth: the veins'; from the fifth: OWN_STREAM's
    rng_var, rng_geo, rng_distal = (np.random.default_rng(streams[k]) for k in (0, 1, 2))
    rng_own = {k: np.random.default_rng(streams[k]) for k in set(OWN_STREAM.values())}
    variants = draw_variants(p, rng_var)
    junctions, segs = _template(p, rng_geo, rng_own)
    diameters = _diameters(p, variants, rng_geo, rng_own, segs)
    present = {n: s for n, s in segs.items()
               if variants.get(n) != "absent" and not (n.startswith("P1") and variants[n] == "fetal_full")}
    if variants["ACoA"] == "absent":
        present.pop("ACoA", None)
    if p.injection == "all":
        root_j = "CCAprox_L"
        for target in ("CCAprox_R", "VAprox_L", "VAprox_R"):  # the other inflows hang on virtual connectors
            present[f"virtual_{target}"] = (root_j, target, [], "virtual")
    else:
        present = _territory(p.injection, present, variants, diameters)
        root_j = present[INJECTIONS[p.injection][0]][0]
    root_segment = next(n for n in sorted(present) if present[n][0] == root_j and not n.startswith("virtual"))
    side_origin = {n: ORIGIN_ON[key][0].format(s=n[-1]) for n, (_, _, _, key) in present.items() if key in ORIGIN_ON}
    present = {n: seg for n, seg in present.items() if side_origin.get(n, n) in present}

    adj: dict[str, list[str]] = {}
    for n in sorted(set(present) - set(side_origin), key=lambda n: (not n.startswith("virtual"), n)):
        a, b_, _, _ = present[n]
        adj.setdefault(a, []).append(n)
        adj.setdefault(b_, []).append(n)

    b = TreeBuilder()
    node_of: dict[str, int] = {}
    dir_of: dict[str, np.ndarray] = {}
    end_of: dict[str, str] = {}
    virtual: list[int] = []
    way_in: list[list[float]] = []  # the bifurcation and the injected artery below the catheter (ICA, ECA runs)
    against: set[str] = set()  # segments laid from their end (the ACoA from the right, a refluxed vertebral artery)
    side_roots: dict[str, int] = {}  # a course's node at its last via point (:data:`SIDE_TREES`)

    nodes_of: dict[str, range] = {}

    def emit(name: str, start: str, parent_node: int, gen: int) -> tuple[int, str]:
        a, b_, vias, key = present[name]
        end = b_ if a == start else a
        if a != start:
            against.add(name)
        pts = [junctions[start]] + (list(vias) if a == start else list(reversed(vias))) + [junctions[end]]
        bid = b.new_branch(gen, "virtual" if key == "virtual" else name)
        if key == "virtual":
            nodes = np.array([pts[0] + 0.01 * (pts[1] - pts[0]), pts[1]])
            radii = np.full(2, VIRTUAL_RADIUS_MM)
            virtual.append(bid)
        else:
            start_dir = None if key in ANGLED_STARTS or (key in REFLUX and a != start) else dir_of.get(start)
            nodes = smooth_curve(pts, start_dir, p.step_mm, p.template_tortuosity,
                                 rng_own[OWN_STREAM[key]] if key in OWN_STREAM else rng_geo,
                                 SAGITTAL_NORMAL if key in INTERHEMISPHERIC else None, p.template_wiggle_mm)
            if key in ON_LAYER_MM:  # bent and undulating along its layer, not off it
                nodes = np.array([_on_layer(q, p.scale, ON_LAYER_MM[key]) for q in nodes])
            elif key in CORTICAL_COURSES:
                nodes = _climb_onto_layer(pts[0], nodes, pts[1], p.scale, -p.cortical_depth_mm, p.step_mm)
            d0, d1 = diameters[name] if a == start else diameters[name][::-1]
            radii = 0.5 * (d0 + (d1 - d0) * np.arange(1, len(nodes) + 1) / len(nodes))
            dir_of.setdefault(end, nodes[-1] - nodes[-2])
            if name == root_segment and p.injection[:3] in CATHETER_UP_MM:  # the tree starts at the catheter
                arc = np.cumsum(np.linalg.norm(np.diff(np.vstack([pts[0], nodes]), axis=0), axis=1))
                k = int(np.searchsorted(arc, CATHETER_UP_MM[p.injection[:3]] * p.scale))
                k = min(k, len(nodes) - 2)  # a node left after it
                way_in.extend([junctions[start].tolist(), *nodes[:k + 1].tolist()])
                b.set_position(parent_node, nodes[k])
                nodes, radii = nodes[k + 1:], radii[k + 1:]
        node, first = parent_node, b.n_nodes
        for q, r in zip(nodes, radii):
            node = b.add_node(q, float(r), node, bid)
        if key in SIDE_TREES:
            side_roots[name] = first + int(np.argmin(np.linalg.norm(nodes - pts[-2], axis=1)))
        nodes_of[name] = range(first, b.n_nodes)
        return node, end

    root_branch = b.new_branch(0)
    node_of[root_j] = b.add_node(junctions[root_j], diameters[root_segment][0] / 2, -1, root_branch)
    gen_of = {root_j: 0}
    done: set[str] = set()
    queue = deque([root_j])
    while queue:
        u = queue.popleft()
        for name in adj.get(u, []):
            if name in done:
                continue
            done.add(name)
            a, b_, _, key = present[name]
            other = b_ if a == u else a
            last, end = emit(name, u, node_of[u], gen_of[u] + (0 if name == root_segment else 1))
            if other not in node_of:
                node_of[other] = last
                end_of[other] = name
                gen_of[other] = gen_of[u] + (0 if key == "virtual" else 1)
                queue.append(other)
    b.set_branch(0, next(k for k, v in b.labels.items() if v == root_segment))  # the root node starts it
    for name in sorted(side_origin.keys() & present.keys()):  # from the parent's node at its origin
        origin, end, _, key = present[name]
        along = [b.parent(nodes_of[side_origin[name]][0]), *nodes_of[side_origin[name]]]
        arc = np.r_[0.0, np.cumsum([np.linalg.norm(b.position(i) - b.position(j)) for j, i in zip(along, along[1:])])]
        mm = ORIGIN_ON[key][1] * p.scale * (-1.0 if side_origin[name] in against else 1.0)
        node = along[1 + int(np.argmin(np.abs(arc[1:] - (mm if mm >= 0 else arc[-1] + mm))))]  # the parent's own
        junctions[origin] = b.position(node)
        gen = b.branch_generation(b.branch_of(node)) + 1
        node_of[end], _ = emit(name, origin, node, gen)
        end_of[end], gen_of[end] = name, gen

    centre = np.asarray(BRAIN_CENTRE_MM) * p.scale
    axes = np.asarray(BRAIN_SEMI_AXES_MM) * p.scale
    cerebellum = (np.asarray(CEREBELLUM_CENTRE_MM) * p.scale, np.asarray(CEREBELLUM_SEMI_AXES_MM) * p.scale)
    if p.distal_iterations > 0:
        lp = LSystemParams(
            iterations=p.distal_iterations,
            length_diameter_ratio=p.distal_length_diameter_ratio,
            tortuosity_deg=p.distal_tortuosity_deg,
            min_radius_mm=p.min_radius_mm,
            step_mm=p.step_mm,
            root_diameter_mm=2.0,
            stop_probability=0.0,  # a cortical trunk never ends early: its territory must be covered
            asymmetry_min=0.6,
        )

        def surface_of(key: str) -> tuple[str, np.ndarray, np.ndarray]:
            """The kind of surface ``key``'s tree is laid on (:func:`~vessel_models.courses.lay_on_surface`) and its
            ellipsoid: a cerebellar tree on the cerebellum's cortex."""
            return ("cortex", *cerebellum) if DISTAL_TREES[key] == "cerebellum" else (DISTAL_TREES[key], centre, axes)

        def grow(n: int, heading: np.ndarray, key: str, side: float, generation: int, d: float) -> None:
            """The distal tree of ``key`` (root diameter ``d`` mm) grown at node ``n`` and laid on its surface."""
            if d / 2 < p.min_radius_mm * 1.5:
                return
            kind, on_centre, on_axes = surface_of(key)
            heading = heading / np.linalg.norm(heading)
            if kind in ("cortex", "convexity", "scalp", "dura"):  # grow along the surface, not out of it
                normal = ellipsoid_normal(b.position(n), on_centre, on_axes)
                along = heading - normal * float(np.dot(heading, normal))
                heading = along if np.linalg.norm(along) > 0.2 else perpendicular(normal)
            first = b.n_nodes
            own, rng_tree = DISTAL_LSYSTEM.get(key, {}), rng_own[OWN_STREAM[key]] if key in OWN_STREAM else rng_distal
            grow_lsystem(b, n, heading, replace(lp, **{**own, "iterations": min(lp.iterations, own.get(
                "iterations", lp.iterations))}), rng_tree, root_diameter_mm=d, generation_offset=generation)
            lay_on_surface(b, first, n, kind, side, on_centre, on_axes, p.cortical_depth_mm * p.scale, 15.0 * p.scale,
                           p.scale, rng_tree.spawn(1)[0])  # a child stream: the draws after it stay as they were
            if DISTAL_TREES[key] in SUPRATENTORIAL:
                lift_over(b, first, *cerebellum, (TENTORIUM_MM + p.cortical_depth_mm) * p.scale)

        for seg_name in sorted(present):
            key = present[seg_name][3]
            end = present[seg_name][1]
            if key not in DISTAL_TREES or end_of.get(end) != seg_name:  # not where a cycle closes
                continue
            side = 1.0 if seg_name.endswith("_L") else -1.0
            grow(node_of[end], dir_of[end], key, side, gen_of[end] + 1, 2.0 * b.radius(node_of[end]))
            if seg_name in side_roots:  # the course also branches on its way: a tree 45 deg off it
                m = side_roots[seg_name]
                along = b.position(m) - b.position(b.parent(m))
                across = np.cross(ellipsoid_normal(b.position(m), *surface_of(key)[1:]), along)
                turn = rng_own[OWN_STREAM[key]].choice([-1.0, 1.0])
                grow(m, along / np.linalg.norm(along) + turn * across / np.linalg.norm(across), key, side,
                     gen_of[end] + 1, SIDE_TREE_DIAMETER * 2.0 * b.radius(m))

    venous: dict[str, list[int]] = {}
    if p.veins:
        key_of = {name: seg[3] for name, seg in present.items()}
        below = [k for k, name in b.labels.items() if key_of.get(name) in CEREBELLAR]  # their trees' nodes too
        infratentorial = np.isin(b.labelled_branches(), below)
        branches, inflow = add_cerebral_veins(b, 0, centre, axes, p.scale, p.radius_jitter, p.template_tortuosity,
                                              p.step_mm, p.vein_iterations, p.min_radius_mm,
                                              np.random.default_rng(streams[3]), infratentorial, cerebellum)
        venous = {"venous_branches": branches, "venous_inflow_nodes": inflow}
        virtual.append(branches[0])
    meta = {
        "generator": "cow",
        "seed": int(seed),
        "params": asdict(p),
        "variants": variants,
        "virtual_branches": virtual,
        "frame": "LPS",
        "root": f"{root_segment} " + (f"{CATHETER_UP_MM[p.injection[:3]] * p.scale:g} mm from its origin, at the "
                                      "catheter" if p.injection[:3] in CATHETER_UP_MM else "proximal"),
        "injection": p.injection,
        "brain_centre_mm": centre.tolist(),
        "brain_semi_axes_mm": axes.tolist(),
        **venous,
    }
    tree = b.build(meta)
    tree.metadata["feeding_path_mm"] = _feeding_path(p.injection, junctions, tree, way_in)
    tree.metadata = normalized_metadata(tree.metadata)
    return tree
