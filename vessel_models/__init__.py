"""Vessel trees as graphs: generators, I/O, bolus fill state and morphometrics.

Independent of ``ddsa_sim``. Positions in mm (usually patient LPS), radii in mm.
"""

from vessel_models.tree import TreeBuilder, VesselInputError, VesselTree

__all__ = [
    "VesselInputError",
    "VesselTree",
    "TreeBuilder",
    "generate",
    "GENERATORS",
    "load_tree",
    "save_tree",
    "save_vtp",
    "load_vtp",
    "save_json",
    "load_json",
]


def __getattr__(name: str):  # lazy: keep `import vessel_models` light
    if name in ("generate", "GENERATORS"):
        from vessel_models import generators

        return getattr(generators, name)
    if name in ("load_tree", "save_tree", "save_vtp", "load_vtp", "save_json", "load_json"):
        from vessel_models import io

        return getattr(io, name)
    raise AttributeError(f"module 'vessel_models' has no attribute {name!r}")
