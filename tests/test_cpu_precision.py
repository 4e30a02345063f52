"""vessel_models.gan.precision: bfloat16 autocast on the CPU, honoured everywhere, warned about where the CPU has no
native bfloat16 (neither AVX512-BF16 nor AMX)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from ddsa_sim.training.config import parse_config
from ddsa_sim.training.loop import run_training
from ddsa_sim.training.synthetic import write_synthetic_store
from vessel_models.gan import precision
from vessel_models.gan.config import GanConfig
from vessel_models.gan.train import train_gan


def _kernel_flags() -> set[str]:
    """The CPU flags the Linux kernel reports (``/proc/cpuinfo``), independently of PyTorch's probe."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.split(":", 1)[0].strip() == "flags":
            return set(line.split(":", 1)[1].split())
    pytest.skip("no flags line in /proc/cpuinfo (not x86 Linux)")


def test_bfloat16_probe_agrees_with_the_kernel_and_honours_the_onednn_cap(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    native = bool({"avx512_bf16", "amx_bf16"} & _kernel_flags())
    assert precision.cpu_computes_bfloat16() is native
    for cap in ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "DEFAULT"):  # a cap at or above them leaves them
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert precision.cpu_computes_bfloat16() is native
    for cap in ("AVX2", "avx512_core"):  # a cap below them takes them away, whatever the CPU
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert precision.cpu_computes_bfloat16() is False
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")  # oneDNN's older name
    assert precision.cpu_computes_bfloat16() is False


def test_bfloat16_is_honoured_everywhere_and_warned_about_without_native_bfloat16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_computes_bfloat16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning where bfloat16 pays, none when it is off
        assert precision.cpu_autocast_dtype(True, "optim.amp_cpu") is torch.bfloat16
        assert precision.cpu_autocast_dtype(False, "optim.amp_cpu") is None
    monkeypatch.setattr(precision, "cpu_computes_bfloat16", lambda: False)
    with pytest.warns(UserWarning, match=r"^optim\.amp_cpu: this CPU has neither AVX512-BF16 nor AMX .*set it false"):
        assert precision.cpu_autocast_dtype(True, "optim.amp_cpu") is torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.cpu_autocast_dtype(False, "optim.amp_cpu") is None


def test_both_trainers_warn_naming_their_option_and_still_train_in_bfloat16(monkeypatch, tmp_path):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # what a CPU without native bfloat16 looks like to the probe
    store = write_synthetic_store(tmp_path / "s.zarr", splits={"train": 2, "val": 1}, per_ct=2, size=32)
    cfg = parse_config({"num_threads": 1, "device": "cpu", "model": {"base_channels": 4, "depth": 2},
                        "data": {"crop_size": 32, "patch_size": 32, "batch_size": 2},
                        "optim": {"max_steps": 2, "val_every": 100, "ckpt_every": 100, "amp_cpu": True}})
    with pytest.warns(UserWarning, match=r"^optim\.amp_cpu: this CPU has neither AVX512-BF16 nor AMX"):
        result = run_training(cfg, tmp_path / "unet", store=store, progress=False)
    assert result.precision == "bfloat16"  # the same numbers on every CPU: the config decides, not the machine
    gan = GanConfig.from_dict({"device": "cpu", "num_threads": 1, "amp_cpu": True, "eval_every": 1000,
                               "data": {"shape": [8, 8, 8], "spacing_mm": 1.0, "mode": "crop", "val_fraction": 0.25},
                               "net": {"kind": "wgan", "latent_dim": 4, "base_channels": 2, "max_channels": 4},
                               "optim": {"batch_size": 2, "n_critic": 1, "max_steps": 1}})
    slabs = [torch.zeros(8, 8, 8, dtype=torch.bool).index_fill_(1, torch.tensor([3, 4]), True).numpy()] * 4
    with pytest.warns(UserWarning, match=r"^amp_cpu: this CPU has neither AVX512-BF16 nor AMX"):
        assert train_gan(gan, slabs, tmp_path / "gan", progress=False).precision == "bfloat16"
