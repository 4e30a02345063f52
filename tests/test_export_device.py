"""The export config's ``device:``: validation, one GPU per worker process, CPU-only refusal before any write."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time

import pytest
import yaml
from test_export_scene import write_config

from ddsa_sim import InputError
from ddsa_sim.export import devices
from ddsa_sim.export.config import config_from_dict, example_config_yaml, load_config
from ddsa_sim.export.devices import worker_device
from ddsa_sim.export.runner import _worker_init, run_export


def _cuda_available() -> bool:
    torch = pytest.importorskip("torch")
    return torch.cuda.is_available()


@pytest.mark.parametrize("device, n_gpus, expected", [
    ("cuda", 2, ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]),
    ("cuda", 3, ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]),
    ("cuda", 1, ["cuda:0"] * 5),
    ("cuda:1", 2, ["cuda:1"] * 5),
    ("cpu", 0, ["cpu"] * 5),
])
def test_worker_k_gets_gpu_k_mod_n(device, n_gpus, expected):
    assert [worker_device(device, k, n_gpus) for k in range(5)] == expected


@pytest.mark.parametrize("device, n_gpus, words", [("cuda", 0, "needs a CUDA GPU"), ("cuda:0", 0, "needs a CUDA GPU"),
                                                    ("cuda:2", 2, "cuda:0..cuda:1")])
def test_missing_gpu_is_one_line_naming_device(device, n_gpus, words):
    with pytest.raises(InputError, match=words) as err:
        worker_device(device, 0, n_gpus)
    assert str(err.value).startswith("device: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "CUDA", "cuda:0,1", 3])
def test_bad_device_value_names_the_field(value):
    data = {"cts": [{"path": "builtin:chest-ct"}], "vessels": {"sources": [{"generator": "lsystem"}]},
            "count": 1, "seed": 1, "device": value}
    with pytest.raises(InputError) as err:
        config_from_dict(data, where="ds.yaml")
    assert str(err.value).startswith("ds.yaml: device: ") and "\n" not in str(err.value)


def test_example_config_documents_device():
    cfg = yaml.safe_load(example_config_yaml())
    assert cfg["device"] == "cpu"
    assert "device:" in example_config_yaml() and "k mod n_gpus" in example_config_yaml()


def _numbered(delay_s: float) -> tuple[int, int]:
    time.sleep(delay_s)  # keeps a worker busy, so each task of a round lands on another process
    return os.getpid(), devices._WORKER_INDEX


def test_local_worker_processes_are_numbered_0_to_n_minus_1():
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=2, mp_context=ctx, initializer=_worker_init,
                                initargs=(1, os.getpid(), ctx.Value("i", 0))) as pool:
        got = dict(f.result() for f in [pool.submit(_numbered, 1.0) for _ in range(2)])
    assert sorted(got.values()) == [0, 1]  # two processes, two numbers: GPUs cuda:0 and cuda:1 of two
    assert sorted(worker_device("cuda", k, 2) for k in got.values()) == ["cuda:0", "cuda:1"]


def test_cuda_on_a_cpu_only_machine_fails_before_the_store(tmp_path):
    if _cuda_available():
        pytest.skip("a GPU is present")
    cfg = load_config(write_config(tmp_path, noise=False, count=1, device="cuda"))
    with pytest.raises(InputError, match="^device: 'cuda' needs a CUDA GPU"):
        run_export(cfg, tmp_path / "ds.zarr", progress=False, preview=False)
    assert not (tmp_path / "ds.zarr").exists()


@pytest.mark.parametrize("options, device, field", [
    ({"method": "siddon"}, "cuda", "renderer_options.method"),
    ({"method": "siddon", "backend": "torch"}, "cpu", "renderer_options.method"),
    ({"device": "cuda"}, "cpu", "renderer_options.device"),  # the old place: one way to say it
])
def test_options_that_cannot_run_fail_before_the_store(tmp_path, options, device, field):
    cfg = load_config(write_config(tmp_path, noise=False, count=1, device=device, renderer_options=options))
    with pytest.raises(InputError, match=f"^{field}: "):
        run_export(cfg, tmp_path / "ds.zarr", progress=False, preview=False)
    assert not (tmp_path / "ds.zarr").exists()
