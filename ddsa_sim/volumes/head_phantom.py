"""A procedural adult head CT: a training anatomy with a skull, skull base, sinuses, teeth and spine.

The registries hold no head CT to train on (``../shared/DESIGN.md``); a network that only ever saw a
chest draws the edges of a skull base and the walls of air cells as vessels. ``builtin:head-phantom-<seed>``
is a head built from published adult anatomy, one "patient" per seed: every dimension and density is
drawn from the ranges in :data:`RANGES` (sources: ``docs/export.md``, "A procedural head for training"). It was
designed from those sources only, never from the held-out TIGRE head (:mod:`ddsa_sim.volumes.tigre_head`).

Construction: soft tissue (scalp, face, neck, ears), then the cranial vault (cortical tables and diploe,
brain, ventricles, calcifications, diploic channels, middle meningeal grooves), then the skull base and
face (petrous pyramids with mastoid air cells, clivus and sphenoid sinus, fossa floors, orbits with their
walls and globes, the ethmoid labyrinth, nasal cavity with septum and conchae, maxillary and frontal
sinuses, styloid processes, calcified carotid siphons, zygomatic arches, palate, mandible, teeth), then
the cervical spine and the airway. Each structure is an ellipsoid, ellipsoidal shell, cylinder (a tube is
a chain of them) or foam of :mod:`ddsa_sim.volumes.distractors` painted over what lies beneath
(``HU <- HU + w (HU_s - HU)``, ``w`` its partial-volume occupancy), so a sinus painted after its bony wall
is air inside a bone rim, and a foam of air cells painted into a bone block leaves bony septa between
its cells (the ethmoid and mastoid honeycombs, septated sinuses).

Frame (LPS mm): 1 mm voxels, :data:`SHAPE` voxels centred on the world origin, array axes along
left, posterior, superior. The origin lies about at the orbitomeatal level, 120 mm below the vertex,
where the skull base and the Circle of Willis are. No label map: materials follow from HU.
"""

from __future__ import annotations

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.volumes.distractors import Structure, paint
from ddsa_sim.volumes.volume import Volume

__all__ = ["MEAN_SKULL_MM", "RANGES", "SHAPE", "head_phantom", "head_structures"]

#: Voxels (left, posterior, superior) of 1 mm.
SHAPE = (180, 240, 270)

Interval = tuple[float, float]

#: Skull breadth, length and height (mm) of the mean head the structures' positions are given for; a
#: head's positions are scaled per axis by its drawn dimensions over these, its sizes by the mean ratio.
MEAN_SKULL_MM = (143.0, 182.0, 154.0)

#: Uniform ranges of the drawn parameters (adult; sources in docs/export.md): lengths in mm, HU.
RANGES: dict[str, Interval] = {
    "skull_breadth_mm": (134.0, 152.0),     # outer bone, euryon-euryon (head breadth minus scalp)
    "skull_length_mm": (172.0, 192.0),      # outer bone, glabella-opisthocranion
    "skull_height_mm": (146.0, 162.0),      # twice the vault's vertical semi-axis
    "scalp_mm": (4.0, 7.0),
    "vault_thickness_mm": (4.5, 8.5),       # calvarial thickness
    "cortical_hu": (1300.0, 1900.0),        # vault tables, fossa floors, orbit and sinus walls, mandible
    "diploe_hu": (450.0, 850.0),
    "petrous_hu": (1700.0, 2300.0),         # otic capsule: the densest bone of the skull
    "brain_hu": (30.0, 40.0),
    "csf_hu": (2.0, 12.0),
    "soft_hu": (30.0, 55.0),                # scalp, muscle
    "fat_hu": (-110.0, -70.0),              # orbital fat
    "tooth_hu": (2000.0, 3000.0),           # enamel and dentine
    "cancellous_hu": (250.0, 500.0),        # vertebral bodies
    "ventricle_scale": (0.6, 1.6),          # lateral ventricle size (age)
    "sinus_scale": (0.65, 1.3),             # pneumatisation of each sinus, drawn per sinus
    "ethmoid_cells": (8.0, 18.0),           # air cells per ethmoid labyrinth (each side)
    "mastoid_cells": (0.0, 25.0),           # mastoid air cells per side
    "mastoid_pneumatisation": (0.5, 0.9),   # pneumatised part of the mastoid process (semi-axes ratio)
    "sphenoid_cells": (1.0, 4.0),           # sphenoid sinus compartments (intersinus and accessory septa)
    "septum_mm": (0.3, 1.0),                # bony septa between air cells
    "diploic_channels": (2.0, 7.0),         # diploic venous channels per head
    "diploic_radius_mm": (0.5, 1.5),
    "channel_length_mm": (30.0, 100.0),
    "meningeal_groove_radius_mm": (0.6, 1.2),  # groove of the middle meningeal artery on the inner table
    "styloid_length_mm": (20.0, 35.0),
    "calcification_hu": (300.0, 1200.0),    # calcified carotid-siphon wall
}
#: Probabilities of structures not every adult has.
P_FRONTAL_SINUS = 0.9
P_PINEAL_CALCIFIED = 0.6
P_PLEXUS_CALCIFIED = 0.5
P_TOOTH = 0.85
P_MAXILLARY_SEPTUM = 0.3
P_SIPHON_CALCIFIED = 0.6


def _rot_z_to(direction: np.ndarray) -> np.ndarray:
    """A rotation whose third column (local z) is the unit vector along ``direction``."""
    z = np.asarray(direction, float) / np.linalg.norm(direction)
    helper = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def _rot_x(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


class _Builder:
    """Collects the structures of one head; positions are given for a mean head and scaled to this one."""

    def __init__(self, rng: np.random.Generator, scale: np.ndarray):
        self.rng, self.scale, self.out = rng, scale, []

    def draw(self, key: str) -> float:
        lo, hi = RANGES[key]
        return float(self.rng.uniform(lo, hi))

    def _at(self, centre: tuple[float, float, float], jitter_mm: float) -> np.ndarray:
        return np.asarray(centre, float) * self.scale + self.rng.uniform(-jitter_mm, jitter_mm, 3)

    def _axes(self, axes, exact: bool) -> np.ndarray:
        """Semi-axes (mm) of a mean-head structure, scaled by this head's mean scale unless ``exact``."""
        return np.asarray(axes, float) * (1.0 if exact else self.scale.mean())

    def ellipsoid(self, centre, axes, hu: float, rot: np.ndarray | None = None, jitter_mm: float = 0.0,
                  exact: bool = False, draws: bool = True) -> None:
        """An ellipsoid at ``centre`` (mean head, scaled), jittered by up to ``jitter_mm``; ``draws=False``: at its
        scaled centre without a draw from the head's random stream (structures added to the design later, so that
        every other structure of a seed stays as it was)."""
        at = self._at(centre, jitter_mm) if draws else np.asarray(centre, float) * self.scale
        self.out.append(Structure("ellipsoid", at, np.eye(3) if rot is None else rot, self._axes(axes, exact), hu))

    def shell(self, centre, axes, thickness: float, hu: float, rot: np.ndarray | None = None,
              clip: tuple[float, float, float, float] | None = None, exact: bool = False) -> None:
        self.out.append(Structure("shell", self._at(centre, 0.0), np.eye(3) if rot is None else rot,
                                  self._axes(axes, exact), hu, thickness,
                                  None if clip is None else np.asarray(clip, float)))

    def cylinder(self, p0, p1, radius: float, hu: float, exact: bool = False) -> None:
        """A cylinder from ``p0`` to ``p1`` (mean-head points, scaled; this head's points if ``exact``)."""
        scale = 1.0 if exact else self.scale
        a, b = np.asarray(p0, float) * scale, np.asarray(p1, float) * scale
        self.out.append(Structure("cylinder", (a + b) / 2, _rot_z_to(b - a),
                                  np.array([radius, radius, np.linalg.norm(b - a) / 2]), hu))

    def tube(self, points: np.ndarray, radius: float, hu: float) -> None:
        """A tube through this head's ``points`` (n, 3) mm: one cylinder per segment, each lengthened by
        ``radius`` at both ends so that bends leave no gap."""
        for a, b in zip(points[:-1], points[1:]):
            along = (b - a) / np.linalg.norm(b - a) * radius
            self.cylinder(a - along, b + along, radius, hu, exact=True)

    def foam(self, centre, axes, count: int, hu: float, jitter_mm: float = 0.0) -> None:
        """Air cells (``hu``) of a pneumatised bone: the ellipsoid (``centre``, ``axes``) cut into ``count``
        Voronoi cells about seeds uniform in it, with bony septa of a drawn thickness between them."""
        a = self._axes(axes, exact=False)
        u = self.rng.standard_normal((count, 3))
        u *= (self.rng.uniform(size=(count, 1)) ** (1 / 3)) / np.linalg.norm(u, axis=1, keepdims=True)
        self.out.append(Structure("foam", self._at(centre, jitter_mm), np.eye(3), a, hu,
                                  self.draw("septum_mm"), seeds_mm=u * a))


def _surface_path(rng: np.random.Generator, start: np.ndarray, heading: np.ndarray, length_mm: float,
                  radius_mm: float, turn_deg: float, step_mm: float = 3.0) -> np.ndarray:
    """Unit vectors (n, 3) of a smooth random walk on the unit sphere: ``length_mm / step_mm`` steps of
    ``step_mm`` on a sphere of ``radius_mm``, the heading turned by N(0, ``turn_deg``) at each step."""
    u = np.asarray(start, float) / np.linalg.norm(start)
    h = np.asarray(heading, float) - np.dot(heading, u) * u
    h /= np.linalg.norm(h)
    out = [u]
    for _ in range(max(int(length_mm / step_mm), 1)):
        u = u + step_mm / radius_mm * h
        u /= np.linalg.norm(u)
        h = h - np.dot(h, u) * u
        h /= np.linalg.norm(h)
        turn = np.radians(rng.normal(0.0, turn_deg))
        h = np.cos(turn) * h + np.sin(turn) * np.cross(u, h)
        out.append(u)
    return np.array(out)


def head_structures(seed: int) -> list[Structure]:
    """The structures of head ``seed`` in painting order (module docstring), on a background of air."""
    rng = np.random.default_rng([seed, 0x4EAD])
    breadth, length, height = (float(rng.uniform(*RANGES[k])) for k in
                               ("skull_breadth_mm", "skull_length_mm", "skull_height_mm"))
    b = _Builder(rng, np.array([breadth, length, height]) / MEAN_SKULL_MM)
    vault = np.array([breadth, length, height]) / 2  # outer semi-axes of the cranial vault, this head's
    vault_c = (0.0, 8.0, 40.0)
    tilt = _rot_x(-12.0)  # the occiput lower than the forehead: the posterior fossa is the vault's lowest part
    soft, cort, fat, air = b.draw("soft_hu"), b.draw("cortical_hu"), b.draw("fat_hu"), -1000.0
    t = b.draw("vault_thickness_mm")

    # soft tissue: scalp over the vault, face, nose, neck, ears
    b.ellipsoid(vault_c, vault + b.draw("scalp_mm"), soft, rot=tilt, exact=True)
    b.ellipsoid((0, -38, -35), (60, 58, 62), soft)
    b.ellipsoid((0, -96, -18), (11, 16, 24), soft)
    b.ellipsoid((0, -80, -78), (26, 13, 16), soft, draws=False)  # the chin (the mandible's front lay at the skin)
    # the neck up to the skull base, behind the spine as well: at C3 112 x 124 mm (a circumference of 37 cm, the
    # adult range is about 32-40 cm), at the atlas 90 x 100 mm, so the suboccipital muscles cover the spinous
    # processes and the vertebral arteries' loops over the atlas lie in tissue (before 2026-12-07 the neck ended
    # below the atlas: 52 mm wide there, the spinous processes in the air)
    b.ellipsoid((0, 20, -110), (56, 62, 120), soft)
    for side in (-1, 1):
        b.ellipsoid((side * 77, 14, -5), (5, 16, 28), soft)
        # the side of the face: the cheek over the zygoma and its arch (146 mm across the cheeks), the masseter and
        # parotid over the mandibular ramus (6-12 mm), the lower cheek over the mandible's body; before 2026-12-07
        # these bones lay partly outside the skin (12-14 % of the lateral facial skeleton's bone voxels within 2 mm
        # of it, now 0.7-1.5 %), and the superficial temporal artery's course in front of the ear in the air
        b.ellipsoid((side * 56, -38, -14), (17, 42, 16), soft, draws=False)
        b.ellipsoid((side * 52, -2, -50), (16, 26, 42), soft, draws=False)
        b.ellipsoid((side * 40, -38, -74), (20, 30, 18), soft, draws=False)  # the lower cheek over the mandible

    # cranial vault: cortical tables with diploe between, brain, ventricles, calcifications
    b.shell(vault_c, vault, t, cort, rot=tilt, exact=True)
    b.shell(vault_c, vault - 1.5, t - 3.0, b.draw("diploe_hu"), rot=tilt, exact=True)   # 1.5 mm tables
    brain = b.draw("brain_hu")
    b.ellipsoid(vault_c, vault - t, brain, rot=tilt, exact=True)
    csf, v = b.draw("csf_hu"), b.draw("ventricle_scale")
    for side in (-1, 1):
        b.ellipsoid((side * 11, 8, 48), (5 * v, 28 * (0.8 + 0.2 * v), 9 * v), csf, rot=_rot_z(side * 8))
    if rng.random() < P_PINEAL_CALCIFIED:
        b.ellipsoid((0, 24, 36), rng.uniform(1.5, 4.0, 3), rng.uniform(200, 1000), jitter_mm=2)
    for side in (-1, 1):
        if rng.random() < P_PLEXUS_CALCIFIED:
            b.ellipsoid((side * 16, 30, 42), rng.uniform(1.5, 3.5, 3), rng.uniform(150, 600), jitter_mm=2)

    # diploic venous channels winding through the diploe; the middle meningeal artery's grooves in the
    # inner table, from the temporal squama upwards (anterior and posterior branch)
    centre = np.asarray(vault_c) * b.scale

    def on_vault(path: np.ndarray, depth_mm: float) -> np.ndarray:
        return centre + (tilt @ ((vault - depth_mm)[:, None] * path.T)).T

    for _ in range(int(b.draw("diploic_channels"))):
        start = rng.standard_normal(3)
        start[2] = abs(start[2])
        path = _surface_path(rng, start, rng.standard_normal(3), b.draw("channel_length_mm"), vault.mean(), 15.0)
        b.tube(on_vault(path, t / 2), min(b.draw("diploic_radius_mm"), 0.45 * (t - 3.0)), soft)
    groove = b.draw("meningeal_groove_radius_mm")
    for side in (-1, 1):
        for heading in ((0.0, -0.6, 1.0), (0.0, 0.8, 0.6)):
            path = _surface_path(rng, np.array([side, 0.15, -0.35]), np.array(heading),
                                 b.draw("channel_length_mm"), vault.mean(), 12.0)
            b.tube(on_vault(path, t), groove, brain)

    # skull base: fossa floors, petrous pyramids (with mastoid air cells), clivus and sphenoid sinus
    b.ellipsoid((0, -50, 14), (34, 30, 2.5), cort, rot=_rot_x(-8), jitter_mm=2)        # anterior fossa floor
    for side in (-1, 1):
        b.ellipsoid((side * 30, -18, 10), (24, 4, 6), cort, rot=_rot_z(side * -25), jitter_mm=2)  # sphenoid wings
        b.ellipsoid((side * 38, 0, -6), (22, 26, 3), cort, rot=_rot_x(10), jitter_mm=2)  # middle fossa floor
        b.ellipsoid((side * 52, 28, -14), (12, 14, 16), b.draw("diploe_hu"), jitter_mm=2)  # mastoid process
        cells, pneumatised = int(b.draw("mastoid_cells")), b.draw("mastoid_pneumatisation")
        if cells:
            b.foam((side * 52, 28, -14), np.array([12, 14, 16]) * pneumatised, cells, air)
        b.ellipsoid((side * 30, 14, -6), (31, 9, 10), b.draw("petrous_hu"), rot=_rot_z(side * 45), jitter_mm=2)
        b.cylinder((side * 72, 14, -10), (side * 50, 14, -8), 3.5, air)               # external ear canal
    b.ellipsoid((0, 6, -16), (14, 22, 17), b.draw("diploe_hu"), rot=_rot_x(-40), jitter_mm=2)  # clivus
    s = b.draw("sinus_scale")
    b.foam((0, -14, 0), (11 * s, 11 * s, 10 * s), int(b.draw("sphenoid_cells")), air, jitter_mm=2)  # sphenoid sinus

    # orbits: bony wall open to the front, fat, globe
    for side in (-1, 1):
        b.shell((side * 33, -63, 8), (19, 24, 19), 2.0, cort, rot=_rot_z(side * -10), clip=(0, -1, 0, 14))
        b.ellipsoid((side * 33, -63, 8), (17, 22, 17), fat, rot=_rot_z(side * -10))
        b.ellipsoid((side * 33, -78, 8), (12, 12, 12), soft - 25.0)
    # ethmoid labyrinth: a bone block between the orbits, each side a honeycomb of air cells
    b.ellipsoid((0, -60, 4), (12, 22, 14), cort * 0.6)
    for side in (-1, 1):
        b.foam((side * 6.5, -60, 4), (5, 18, 11), int(b.draw("ethmoid_cells")), air)
    # nasal cavity (either side of the septum) and nasopharynx
    for side in (-1, 1):
        b.ellipsoid((side * 7, -66, -22), (5, 30, 18), air)
    b.ellipsoid((0, -30, -28), (12, 12, 10), air)
    # bony nasal septum; middle and inferior conchae: mucosa over a scroll of thin bone open laterally
    b.ellipsoid((0, -60, -20), (0.9, 24, 14), cort * 0.8)
    for side in (-1, 1):
        for z, length in ((-14, 18), (-30, 22)):
            b.ellipsoid((side * 8.5, -64, z), (3.0, length, 4.5), soft)
            b.shell((side * 8.5, -64, z), (2.2, length - 2, 3.5), 0.8, cort * 0.7,
                    clip=(side * 0.7071, 0, -0.7071, 0.0))
    # maxillary sinuses in their bony walls; frontal sinus in a thickened frontal bone
    for side in (-1, 1):
        s = b.draw("sinus_scale")
        axes = np.array([13, 17, 16]) * s
        b.shell((side * 28, -60, -24), axes + 2.0, 2.0, cort)
        if rng.random() < P_MAXILLARY_SEPTUM:
            b.foam((side * 28, -60, -24), axes, 2, air)
        else:
            b.ellipsoid((side * 28, -60, -24), axes, air)
    b.ellipsoid((0, -76, 36), (28, 9, 18), cort)
    if rng.random() < P_FRONTAL_SINUS:
        s = b.draw("sinus_scale")
        for side in (-1, 1):
            b.ellipsoid((side * 9, -76, 38), (9 * s, 5, 11 * s), air, jitter_mm=1)
    # styloid processes: thin tapering bone from under the ear, anteromedially down
    for side in (-1, 1):
        base = np.array([side * 40.0, 16, -22]) * b.scale
        direction = np.array([-side * 0.25, -0.35, -0.9]) / np.linalg.norm([0.25, 0.35, 0.9])
        half = b.draw("styloid_length_mm") / 2 * direction
        b.cylinder(base, base + half, 2.2, cort, exact=True)
        b.cylinder(base + half, base + 2 * half, 1.3, cort, exact=True)
    # calcified plaques in the wall of the carotid siphon (cavernous internal carotid artery)
    siphon = np.array([(17, 2, -10), (18, -6, -6), (17, -14, -2), (16, -16, 4), (15, -10, 8)], float)
    for side in (-1, 1):
        if rng.random() >= P_SIPHON_CALCIFIED:
            continue
        line = siphon * [side, 1, 1] * b.scale
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))])
        for _ in range(int(rng.integers(1, 4))):
            s0 = rng.uniform(0, arc[-1] - 4.0)
            at = np.linspace(s0, min(s0 + rng.uniform(4.0, 12.0), arc[-1]), 6)
            piece = np.stack([np.interp(at, arc, line[:, k]) for k in range(3)], axis=1)
            normal = np.cross(piece[-1] - piece[0], rng.standard_normal(3))
            b.tube(piece + 2.5 * normal / np.linalg.norm(normal), rng.uniform(0.5, 0.9), b.draw("calcification_hu"))

    # zygomas, palate, mandible, teeth
    for side in (-1, 1):
        b.ellipsoid((side * 50, -62, -14), (10, 10, 12), cort)
        b.cylinder((side * 62, -55, -14), (side * 64, -10, -12), 4.0, cort)
    b.ellipsoid((0, -62, -47), (24, 26, 4), cort)
    arch = [(48 * np.sin(th), -88 * np.cos(th) + 5) for th in np.linspace(-np.pi / 2, np.pi / 2, 13)]
    for z in (-72, -84):
        for p0, p1 in zip(arch[:-1], arch[1:]):
            b.cylinder((*p0, z), (*p1, z), 7.0, cort)
    for side in (-1, 1):
        b.cylinder((side * 47, 4, -84), (side * 50, 0, -20), 7.0, cort)                # ramus to the condyle
    tooth = b.draw("tooth_hu")
    for z0, z1, w, d in ((-68, -52, 40, 74), (-50, -34, 42, 76)):                       # lower, upper arch
        for th in np.linspace(-1.25, 1.25, 14):
            if rng.random() < P_TOOTH:
                x, y = w * np.sin(th), -d * np.cos(th) - 6
                b.cylinder((x, y, z0), (x, y, z1), 2.8 + 1.2 * abs(th) / 1.25, tooth)

    # cervical spine (C2 with the dens, C3-C5, posterior arches) and airway
    canc = b.draw("cancellous_hu")
    b.cylinder((0, 10, -44), (0, 10, -30), 5.0, canc)                                    # dens
    for k, z in enumerate((-56, -76, -96, -116)):
        y = 12 + 2 * k
        b.cylinder((0, y, z - 8), (0, y, z + 8), 8.5, canc)
        for side in (-1, 1):
            b.cylinder((side * 11, y + 10, z), (0, y + 30, z - 3), 3.5, cort)            # laminae
        b.cylinder((0, y + 30, z - 3), (0, y + 44, z - 10), 3.0, cort)                   # spinous process
    for side in (-1, 1):
        b.ellipsoid((side * 20, 14, -40), (7, 9, 6), cort)                               # atlas lateral masses
    b.cylinder((0, -14, -130), (0, -14, -36), 8.0, air)                                  # pharynx
    return b.out


def head_phantom(seed: int, edge_voxels: float = 1.0) -> Volume:
    """Head ``seed`` as a CT (HU, float32) named ``builtin:head-phantom-<seed>`` (module docstring).

    Raises
    ------
    InputError
        A negative seed.
    """
    if seed < 0:
        raise InputError(f"builtin:head-phantom-{seed}: the seed must be >= 0")
    affine = np.eye(4)
    affine[:3, 3] = -(np.array(SHAPE) - 1) / 2.0
    ct = Volume(np.full(SHAPE, -1000.0, np.float32), affine, name=f"builtin:head-phantom-{seed}")
    for structure in head_structures(seed):
        paint(ct.data, ct, structure, edge_voxels)
    return ct
