"""Tools and implants: voxelized surfaces and masks that displace the anatomy they occupy."""

from __future__ import annotations

import numpy as np
import pytest

from ddsa_sim import InputError
from ddsa_sim.geometry import CArm
from ddsa_sim.physics.attenuation import mass_attenuation
from ddsa_sim.physics.spectra import get_spectrum
from ddsa_sim.projector import Projector, ProjectorVolume

SPEC = get_spectrum("90KV_AL40")


def beer_lambert_neglog(area_g_per_cm2: dict[str, float]) -> float:
    """-ln(I/I0), energy-integrating, of area densities per material (independent of the projector)."""
    w = SPEC.energies_kev * SPEC.fluence
    mu_a = sum(mass_attenuation(m, SPEC.energies_kev) * a for m, a in area_g_per_cm2.items())
    return float(-np.log(np.sum(w * np.exp(-mu_a)) / w.sum()))


def cube(n: int, inner: slice) -> np.ndarray:
    a = np.zeros((n, n, n), np.float32)
    a[inner, inner, inner] = 1.0
    return a


@pytest.mark.parametrize("displaced_density", [1.03, 0.0])
def test_tool_displaces_the_tissue_it_occupies(displaced_density):
    # 40 mm soft-tissue cube and a 10 mm titanium cube at its centre, 1 mm voxels, centred at 0
    affine = np.eye(4)
    affine[:3, 3] = -21.5
    tissue = ProjectorVolume.single_material("body", cube(44, slice(2, 42)) * 1.03, affine, "soft tissue")
    tool_affine = np.eye(4)
    tool_affine[:3, 3] = -6.5
    tool = ProjectorVolume.tool("wire", cube(14, slice(2, 12)), tool_affine, "titanium", 4.5,
                                displaced_density_g_per_cc=displaced_density)
    carm = CArm(sensor_height=33, sensor_width=33, pixel_mm=1.0)
    image = Projector([tissue, tool], step_mm=0.05).render(carm).neglog["image"][16, 16]
    tissue_cm = 3.0 if displaced_density else 4.0  # the tool pushes 1 cm of tissue aside, or lies over it
    assert image == pytest.approx(beer_lambert_neglog({"soft tissue": 1.03 * tissue_cm, "titanium": 4.5}), rel=2e-3)


def test_kwire_volume_matches_its_geometry():
    from ddsa_sim.compat.deepdrr import KWire

    wire = KWire.from_example(diameter=2.0, length=30.0, spacing_mm=0.2)
    voxel_mm3 = 0.2 ** 3
    expected_mm3 = np.pi * 1.0 ** 2 * (27.0 + 3.0 / 3.0)  # cylinder + cone of the 3 mm tip
    assert wire.occupancy.sum() * voxel_mm3 == pytest.approx(expected_mm3, rel=0.02)
    assert wire.material == "iron" and wire.density == 7.5
    pv = wire.projector_volume("kwire")
    assert pv.displaces == {"soft tissue": pytest.approx(1.03 / 7.5)}


@pytest.mark.parametrize("suffix", [".stl", ".vtp"])
def test_mesh_file_is_voxelized_at_its_own_resolution(tmp_path, suffix):
    import pyvista as pv

    from ddsa_sim.compat.deepdrr import Mesh

    box = pv.Box(bounds=(0, 4, 0, 3, 0, 2)).triangulate()
    path = tmp_path / f"box{suffix}"
    box.save(path)
    tool = Mesh.from_stl(path) if suffix == ".stl" else Mesh.from_vtp(path)
    assert tool.occupancy.sum() * 0.1 ** 3 == pytest.approx(24.0, rel=0.01)
    assert tool.spacing[0] == pytest.approx(0.1)


def test_tool_bad_inputs(tmp_path):
    from ddsa_sim.compat.deepdrr import Mesh

    with pytest.raises(InputError, match="no such mesh"):
        Mesh.from_stl(tmp_path / "missing.stl")
    with pytest.raises(InputError, match="occupancy"):
        Mesh.from_mask(np.full((2, 2, 2), 2.0), np.eye(4))
    with pytest.raises(InputError, match="unknown material"):
        Mesh.from_mask(np.ones((2, 2, 2)), np.eye(4), material="kryptonite")
