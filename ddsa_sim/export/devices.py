"""Where an export worker renders: the config's ``device:``, one CUDA device per worker process.

``cpu`` (default) renders with the CPU kernels. ``cuda`` gives worker ``k`` of a run the GPU
``cuda:(k mod n)`` of the ``n`` that PyTorch sees in that process (``torch.cuda.device_count()``), so
local workers spread over the machine's GPUs; ``cuda:N`` puts every worker on GPU ``N``. Any device but
``cpu`` marches with the torch backend (trilinear).

The runner numbers its worker processes (:func:`set_worker_index` in each one's initializer; Dask
workers per host); a process that was never numbered is worker 0, which under dask-cuda (one visible
GPU per worker, ``CUDA_VISIBLE_DEVICES``) is that worker's own GPU.
"""

from __future__ import annotations

import re

from ddsa_sim import InputError

__all__ = ["check_device_available", "check_device_name", "set_worker_index", "this_worker_device", "worker_device"]

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")

_WORKER_INDEX = 0  # this process's number among the run's workers (set by the runner)


def check_device_name(device: str) -> str:
    """``device`` when it is ``cpu``, ``cuda`` or ``cuda:N``; else ValueError (the config names the field)."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ValueError(f"use cpu, cuda or cuda:N, got {device!r}")
    return device


def worker_device(device: str, worker_index: int, n_gpus: int) -> str:
    """The device worker ``worker_index`` renders on: ``cuda`` -> ``cuda:(worker_index mod n_gpus)``.

    Parameters
    ----------
    device : str
        The config's ``device`` (``cpu``, ``cuda`` or ``cuda:N``).
    worker_index : int
        The worker's number in its run (0, 1, ...).
    n_gpus : int
        CUDA devices visible to the worker.

    Raises
    ------
    InputError
        A CUDA device with no GPU visible, or ``cuda:N`` with ``N >= n_gpus``.
    """
    check_device_name(device)
    if device == "cpu":
        return device
    if n_gpus < 1:
        raise InputError(f"device: {device!r} needs a CUDA GPU, but PyTorch sees none "
                         f"(torch.cuda.is_available() is False); use device: cpu")
    if device == "cuda":
        return f"cuda:{worker_index % n_gpus}"
    if int(device.split(":")[1]) >= n_gpus:
        raise InputError(f"device: {device!r} does not exist; PyTorch sees {n_gpus} GPU(s), cuda:0..cuda:{n_gpus - 1}")
    return device


def _n_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device_available(device: str) -> None:
    """Raise a one-line :class:`InputError` (naming ``device``) when this process cannot use ``device``."""
    if device != "cpu":
        worker_device(device, 0, _n_gpus())


def set_worker_index(index: int) -> None:
    """Number this process among the run's workers (the runner calls it once per worker process)."""
    global _WORKER_INDEX
    _WORKER_INDEX = int(index)


def this_worker_device(device: str) -> str:
    """The device this worker process renders ``device`` on (:func:`worker_device` of its index)."""
    return device if device == "cpu" else worker_device(device, _WORKER_INDEX, _n_gpus())
