"""Batch dataset export: YAML config -> plan of samples -> chunked Zarr store (local processes or Dask).

Modules: :mod:`.config` (validated YAML), :mod:`.plan` (config + seed -> SampleSpec list),
:mod:`.sample` (render one sample; CT cache), :mod:`.format` (the store format's names, dtypes,
version and checksum: its one owner), :mod:`.store` (the Zarr writer and reader, atomic per-sample
writes), :mod:`.runner` (workers, Dask, resume), :mod:`.inspect` (verify a store), :mod:`.preview`
(PNG grid), :mod:`.renderers` (renderer names). Commands: :mod:`ddsa_sim.cli.export`. Format: ``docs/store_format.md``;
operations and memory: ``docs/export.md``.

Importing this package imports none of its modules (the names below load on first use), so readers
such as ``ddsa_sim.training`` can import :mod:`ddsa_sim.export.format` without the exporter.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CTCache": "ddsa_sim.export.sample",
    "DatasetConfig": "ddsa_sim.export.config",
    "SampleSpec": "ddsa_sim.export.plan",
    "example_config_yaml": "ddsa_sim.export.config",
    "load_config": "ddsa_sim.export.config",
    "plan_dataset": "ddsa_sim.export.plan",
    "render_sample": "ddsa_sim.export.sample",
    "run_export": "ddsa_sim.export.runner",
}
__all__ = ["CTCache", "DatasetConfig", "SampleSpec", "example_config_yaml", "load_config", "plan_dataset",
           "render_sample", "run_export"]


def __getattr__(name: str) -> Any:
    """Lazy imports: ``import ddsa_sim.export`` (and the CLI's --help) stays fast."""
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ddsa_sim.export' has no attribute {name!r}")
