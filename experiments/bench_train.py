"""Training benchmark: generator steps/s of ``ddsa-sim train`` for training configs, on CUDA and the CPU.

Usage::

    python experiments/bench_train.py experiments/ddsa_gpu_paper.yaml experiments/duan/unet_d4_w16.yaml
    python experiments/bench_train.py experiments/ddsa_cpu_small.yaml --devices cuda,cpu --steps 100
    python experiments/bench_train.py experiments/duan/fit_cow_w16.yaml --devices cpu,cpu-bf16 --steps 200

Each config trains on a synthetic store (:func:`ddsa_sim.training.synthetic.write_synthetic_store`,
images of the config's ``data.crop_size``, 4 train CTs x 8 samples, 1 val CT) through
:func:`ddsa_sim.training.loop.run_training`, as ``ddsa-sim train`` does: the config's data loader,
augmentation, noise injection, AMP and optimiser, for ``--warmup + --steps`` steps. The rate is read
from the run's own TensorBoard log: ``train/loss`` is written every ``log_every`` steps (set to a
tenth of ``--steps``) with its wall time, so steps/s = (last step - first step at or after
``--warmup``) / (their wall-time difference): the steady training loop, without the set-up
(CUDA context, cuDNN autotuning, data-loader workers, normalisation statistics) or the validation
and checkpoint at the end (``val_every`` etc. set past it). ``hours_for_max_steps`` projects the
config's ``optim.max_steps`` at that rate, without its validations. The synthetic store records no
dose, so configs that lower the dose (``augment.dose_floor_ugy``) stop with that message; their
network and patch size train at the rate of the same config without it. ``parameters_m``: the
generator's (a GAN's critic is not counted).

Devices: ``cuda``, ``cpu`` (float32, ``optim.amp_cpu`` off whatever the config says) and ``cpu-bf16`` (the CPU
with ``optim.amp_cpu`` on: bfloat16 autocast, channels-last weights); with ``cpu`` and ``cpu-bf16`` both given, the
final JSON carries each config's ``cpu_bf16_speedup`` (its steps/s over float32's, the same run of this script).
No peer runs here: the public synthetic-DDSA training code is not a package this project can run
(docs/benchmarks.md). Peak GPU memory: ``torch.cuda.max_memory_allocated`` of the run. Without
a GPU the CUDA rows are skipped with a message (stderr). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from machine import machine  # experiments/machine.py, beside this script


def scalar_events(tb_dir: Path, tag: str) -> list:
    """Every ``tag`` scalar event (``step``, ``wall_time`` s, ``value``) in a run's TensorBoard folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc.Scalars(tag)


def scalar_wall_times(tb_dir: Path, tag: str = "train/loss") -> list[tuple[int, float]]:
    """(step, wall time s) of every ``tag`` scalar in a run's TensorBoard folder."""
    return [(e.step, e.wall_time) for e in scalar_events(tb_dir, tag)]


def usable_devices(devices: str, script: str) -> list[str]:
    """The comma-separated ``--devices`` as a list, without ``cuda`` (and saying so on stderr) where PyTorch sees no
    CUDA GPU."""
    import torch

    out = [d for d in devices.split(",") if d]
    if "cuda" in out and not torch.cuda.is_available():
        print(f"{script}: no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False): CUDA rows skipped",
              file=sys.stderr)
        out.remove("cuda")
    return out


def cpu_bf16_speedup(rows: list[dict], configs: list[str]) -> dict[str, float]:
    """Per config, its ``cpu`` row's bfloat16 steps/s over its float32 steps/s (configs with both rows)."""
    rate = {(r["config"], r["precision"]): r["steps_per_s"] for r in rows if r["device"] == "cpu"}
    return {c: round(rate[c, "bfloat16"] / rate[c, "float32"], 2) for c in configs
            if (c, "bfloat16") in rate and (c, "float32") in rate}


def bench_config(path: str, device: str, steps: int, warmup: int, folder: Path) -> dict:
    """Steady steps/s of one training config on ``device`` (``cuda``, ``cpu`` or ``cpu-bf16``)."""
    import torch

    from ddsa_sim.training.config import load_config
    from ddsa_sim.training.loop import run_training
    from ddsa_sim.training.synthetic import write_synthetic_store
    from ddsa_sim.training.unet import build_unet

    cfg = load_config(path)
    far = warmup + steps + 1
    optim = cfg.optim.model_copy(update={"val_every": far, "ckpt_every": far, "image_every": far,
                                         "log_every": max(1, steps // 10)})
    optim = optim.model_copy(update={"amp_cpu": device == "cpu-bf16"})
    # data.store stays as it is: the synthetic store is run_training's argument
    cfg = cfg.model_copy(update={"device": device.removesuffix("-bf16"), "optim": optim})
    size = cfg.data.crop_size
    store = folder / f"synthetic_{size}.zarr"
    if not store.exists():
        write_synthetic_store(store, splits={"train": 4, "val": 1}, per_ct=8, size=size)
    out = folder / f"{Path(path).stem}_{device}"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = run_training(cfg, out, store=store, max_steps=warmup + steps, progress=False)
    logged = [(s, t) for s, t in scalar_wall_times(out / "tb") if s >= warmup]
    (s0, t0), (s1, t1) = logged[0], logged[-1]
    rate = (s1 - s0) / (t1 - t0)
    row = {"config": path, "device": cfg.device, "batch_size": cfg.data.batch_size, "patch_size": cfg.data.patch_size,
           "gan": cfg.gan.enabled, "precision": result.precision,
           "parameters_m": round(sum(p.numel() for p in build_unet(cfg.model).parameters()) / 1e6, 2),
           "steps": s1 - s0, "seconds": round(t1 - t0, 2), "steps_per_s": round(rate, 3),
           "samples_per_s": round(rate * cfg.data.batch_size, 2),
           "hours_for_max_steps": round(cfg.optim.max_steps / rate / 3600, 3), "max_steps": cfg.optim.max_steps}
    if device == "cuda":
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="training config YAMLs")
    ap.add_argument("--devices", default="cuda", help="comma-separated: cuda, cpu, cpu-bf16")
    ap.add_argument("--steps", type=int, default=200, help="timed steps, after the warm-up")
    ap.add_argument("--warmup", type=int, default=20, help="steps before the timing starts")
    args = ap.parse_args(argv)

    import torch

    devices = usable_devices(args.devices, "bench_train")
    result = {"machine": machine(),
              "torch": torch.__version__, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "rows": []}
    with tempfile.TemporaryDirectory() as folder:
        for path in args.configs:
            for device in devices:
                result["rows"].append(bench_config(path, device, args.steps, args.warmup, Path(folder)))
                print(json.dumps(result["rows"][-1]), flush=True)
    result["cpu_bf16_speedup"] = cpu_bf16_speedup(result["rows"], args.configs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
