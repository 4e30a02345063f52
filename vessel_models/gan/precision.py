"""Mixed precision on the CPU: bfloat16 autocast, and whether this CPU loses by it.

Measured on one Xeon with oneDNN's instruction set capped (docs/benchmarks.md), bfloat16 trained the DDSA U-Net /
the vessel GANs at 2.4x / 2.1-2.9x the float32 steps/s with AMX, 1.0x / 1.2-1.4x with AVX512-BF16 alone, and
0.42x / 0.67-0.73x with AVX-512 and 0.12x / 0.14-0.15x with AVX2, where every bfloat16 operation is converted to
float32 and back. Both trainers (``ddsa_sim.training`` and :mod:`vessel_models.gan.train`) take their CPU autocast
type from here.
"""

from __future__ import annotations

import os
import warnings

import torch

__all__ = ["cpu_autocast_dtype", "cpu_computes_bfloat16"]

#: oneDNN's instruction-set names (``ONEDNN_MAX_CPU_ISA``) below native bfloat16 dot products (AVX512_CORE_BF16)
ONEDNN_ISAS_WITHOUT_BFLOAT16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                "AVX512_CORE_VNNI")


def cpu_computes_bfloat16() -> bool:
    """Whether oneDNN can compute bfloat16 natively here: AVX512-BF16 or AMX dot products.

    True where PyTorch's cpuinfo probe finds either and ``ONEDNN_MAX_CPU_ISA`` (or its older name
    ``DNNL_MAX_CPU_ISA``), if set, does not cap oneDNN below them. False on CPUs PyTorch has no such probe for
    (e.g. ARM), where nothing was measured.
    """
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in ONEDNN_ISAS_WITHOUT_BFLOAT16:
        return False
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(probe is not None and probe() for probe in probes)  # private probes: looked up, not assumed


def cpu_autocast_dtype(amp_cpu: bool, where: str) -> torch.dtype | None:
    """The CPU autocast type a config asks for: bfloat16 with ``amp_cpu``, None (float32) without.

    The request is honoured on every CPU, so a config trains the same numbers everywhere; where the CPU has no
    native bfloat16 (:func:`cpu_computes_bfloat16`) a warning naming the option ``where`` says float32 is faster.
    """
    if not amp_cpu:
        return None
    if not cpu_computes_bfloat16():
        warnings.warn(
            f"{where}: this CPU has neither AVX512-BF16 nor AMX (or ONEDNN_MAX_CPU_ISA caps them), where bfloat16 "
            "trained at 0.12-0.73x the float32 speed (docs/benchmarks.md): set it false here",
            stacklevel=3,
        )
    return torch.bfloat16
