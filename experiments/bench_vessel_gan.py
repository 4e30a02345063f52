"""Vessel GAN training benchmark: generator steps/s of ``ddsa-sim vessels gan-train`` in float32 and bfloat16.

Usage::

    python experiments/bench_vessel_gan.py experiments/vessel_wgan_cpu_small.yaml experiments/vessel_stylegan_cpu_small.yaml
    python experiments/bench_vessel_gan.py experiments/vessel_wgan_gpu.yaml --devices cuda --steps 100

Each config trains through :func:`vessel_models.gan.train.train_gan`, as ``gan-train`` does (its networks,
critic steps, penalties, EMA, batch size and ``num_threads``), on 32 label volumes of straight tubes of the
config's ``data.shape`` (a step costs the same whatever the labels hold), for ``--warmup + --steps``
generator steps. The rate is read from the run's own TensorBoard log (``loss/generator``, written every step
with its wall time): steps/s = (last step - first step at or after ``--warmup``) / (their wall-time
difference), the steady loop without the set-up or the evaluation at the end (``eval_every`` set past it).
``minutes_for_max_steps`` projects the config's ``optim.max_steps`` at that rate, without evaluations.

Devices: ``cpu`` (float32, ``amp_cpu`` off whatever the config says), ``cpu-bf16`` (``amp_cpu`` on: bfloat16
autocast, channels-last weights) and ``cuda`` (float16 autocast unless ``amp: off``). Each row runs in a
process of its own, so ``peak_rss_mb`` (its ``ru_maxrss``) is that row's; with ``cpu`` and ``cpu-bf16`` both
given, the final JSON carries each config's ``cpu_bf16_speedup`` (bfloat16 steps/s over float32's, the same
run of this script). No peer runs here: the published 3D vessel GANs are not packages this project can run
(docs/benchmarks.md). Without a GPU the CUDA rows are skipped with a message (stderr). The last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import resource
import sys
import tempfile
from pathlib import Path

from bench_train import cpu_bf16_speedup, scalar_wall_times, usable_devices  # beside this script
from machine import machine


def _tubes(shape: tuple[int, int, int], n: int = 32) -> list:
    """``n`` label volumes, each a straight tube of radius 3 voxels along the first axis."""
    import numpy as np

    rng = np.random.default_rng(0)
    j, k = np.mgrid[:shape[1], :shape[2]]
    return [np.broadcast_to((j - rng.uniform(0.3, 0.7) * shape[1]) ** 2 + (k - rng.uniform(0.3, 0.7) * shape[2]) ** 2
                            <= 9.0, shape).copy() for _ in range(n)]


def bench_config(path: str, device: str, steps: int, warmup: int, folder: str) -> dict:
    """Steady generator steps/s of one GAN config on ``device`` (``cpu``, ``cpu-bf16`` or ``cuda``)."""
    from vessel_models.gan.config import load_gan_config
    from vessel_models.gan.train import train_gan

    cfg = load_gan_config(path)
    cfg = dataclasses.replace(cfg, device=device.removesuffix("-bf16"), eval_every=warmup + steps + 1,
                              max_minutes=None, amp_cpu=device == "cpu-bf16")
    out = Path(folder) / f"{Path(path).stem}_{device}"
    result = train_gan(cfg, _tubes(cfg.data.shape), out, max_steps=warmup + steps, progress=False)
    logged = [(s, t) for s, t in scalar_wall_times(out / "tb", "loss/generator") if s >= warmup]
    (s0, t0), (s1, t1) = logged[0], logged[-1]
    rate = (s1 - s0) / (t1 - t0)
    return {"config": path, "device": cfg.device, "precision": result.precision, "kind": cfg.net.kind,
            "num_threads": cfg.num_threads, "batch_size": cfg.optim.batch_size, "n_critic": cfg.optim.n_critic,
            "parameters_m": round(sum(p.numel() for m in (result.generator, result.critic)
                                      for p in m.parameters()) / 1e6, 3),
            "steps": s1 - s0, "seconds": round(t1 - t0, 2), "steps_per_s": round(rate, 3),
            "minutes_for_max_steps": round(cfg.optim.max_steps / rate / 60, 1), "max_steps": cfg.optim.max_steps,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="vessel GAN config YAMLs")
    ap.add_argument("--devices", default="cpu,cpu-bf16", help="comma-separated: cpu, cpu-bf16, cuda")
    ap.add_argument("--steps", type=int, default=100, help="timed generator steps, after the warm-up")
    ap.add_argument("--warmup", type=int, default=10, help="generator steps before the timing starts")
    args = ap.parse_args(argv)

    import torch

    devices = usable_devices(args.devices, "bench_vessel_gan")
    result = {"machine": machine(), "torch": torch.__version__, "rows": []}
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder, spawn.Pool(1, maxtasksperchild=1) as pool:
        for path in args.configs:
            for device in devices:
                row = pool.apply(bench_config, (path, device, args.steps, args.warmup, folder))
                result["rows"].append(row)
                print(json.dumps(row), flush=True)
    result["cpu_bf16_speedup"] = cpu_bf16_speedup(result["rows"], args.configs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
