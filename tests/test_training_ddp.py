"""Two-process gloo DistributedDataParallel run on CPU ends with identical weights (and weight averages) on
both ranks."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ddsa_sim.training.config import parse_config
from ddsa_sim.training.loop import run_training
from ddsa_sim.training.synthetic import write_synthetic_store
from ddsa_sim.training.unet import UNet


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: the sockets are held together (closed one by one, the kernel may hand out one port
    twice, and a run rendezvousing on the port of the run before it can hang)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _worker(rank: int, world: int, port: int, store: str, out: str, cfg_json: str) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
        }
    )
    cfg = parse_config(__import__("json").loads(cfg_json))
    res = run_training(cfg, out, store=store, progress=False)
    torch.save(
        {
            "state": res.model.state_dict(),
            "step": res.step,
            "world": res.world_size,
            "first_loss": res.losses[0][1],
        },
        os.path.join(out, f"rank{rank}.pt"),
    )


@pytest.mark.parametrize("amp_cpu", [False, True])
def test_ddp_gloo_two_processes_identical_weights(tmp_path, amp_cpu):
    store = write_synthetic_store(tmp_path / "s.zarr", splits={"train": 2, "val": 1}, per_ct=2, size=32)
    cfg = parse_config(
        {
            "seed": 5,
            "num_threads": 1,
            "device": "cpu",
            "data": {"crop_size": 32, "patch_size": 32, "batch_size": 2, "in_memory": True},
            "model": {"base_channels": 4, "depth": 2},
            "optim": {"lr": 1e-2, "max_steps": 4, "val_every": 2, "ckpt_every": 2, "ema_decay": 0.5,
                      "amp_cpu": amp_cpu},
        }
    )
    out = tmp_path / "run"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(store), str(out), cfg.to_json()), nprocs=2, join=True)
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2 and r0["step"] == r1["step"] == 4
    assert r0["first_loss"] != r1["first_loss"]  # the ranks really saw different data
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
    torch.manual_seed(cfg.seed)
    init = UNet(cfg.model).state_dict()  # the loop's initial weights (same seed)
    assert any(not torch.equal(init[k], v) for k, v in r0["state"].items())  # training moved them
    last = torch.load(out / "last.pt", weights_only=True)  # written by rank 0 only
    assert last["step"] == 4 and all(torch.equal(last["model"][k], v) for k, v in r0["state"].items())
    # what the ranks return and rank 0 keeps is the weight average, not the stepped U-Net
    assert any(not torch.equal(last["model_stepped"][k], v) for k, v in r0["state"].items())
    assert (out / "best.pt").exists()



def _interrupt_worker(rank: int, world: int, ports: list[int], store: str, out: str, cfg_json: str) -> None:
    """Three runs of the same config: ``full`` uninterrupted; ``part`` with a SIGINT to rank 1 alone in the middle
    of its second step (after its forward pass), then resumed. Writes ``rank<r>.json``: how each run ended."""
    import json

    from ddsa_sim.training import loop

    cfg = parse_config(json.loads(cfg_json))
    update, calls = loop._generator_update, []

    def interrupted(state, loss):
        calls.append(1)
        if rank == 1 and len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return update(state, loss)

    ended = []
    for port, (name, resume, sigint) in zip(ports, (("full", False, False), ("part", False, True),
                                                    ("part", True, False))):
        os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                           "RANK": str(rank), "LOCAL_RANK": str(rank)})
        loop._generator_update = interrupted if sigint else update
        try:
            res = run_training(cfg, os.path.join(out, name), store=store, progress=False, resume=resume)
            ended.append({"step": res.step})
        except loop.TrainingInterrupted as exc:
            ended.append({"step": exc.step, "interrupted": True, "saved": exc.saved is not None})
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(ended, f)


@pytest.mark.xfail(raises=subprocess.TimeoutExpired, strict=False,
                   reason="known race under CPU load (a full-suite run, or beside one): one rank has exited and the "
                          "other waits until the limit; passes on an idle machine; cause not found yet (note 45)")
def test_ddp_a_sigint_to_one_rank_stops_both_after_the_same_step_and_resumes_exactly(tmp_path):
    """Rank 1 alone is interrupted mid-step: both ranks complete that step and stop after it (they agree), rank 0
    writes last.pt of it, and a resume ends where an uninterrupted two-process run ends, bit for bit."""
    import json

    store = write_synthetic_store(tmp_path / "s.zarr", splits={"train": 2, "val": 1}, per_ct=2, size=32)
    cfg = parse_config({
        "seed": 5, "num_threads": 1, "device": "cpu",
        "data": {"crop_size": 32, "patch_size": 32, "batch_size": 2, "in_memory": True, "norm_samples": 4},
        "model": {"base_channels": 4, "depth": 2, "norm": "batch"},
        "optim": {"lr": 1e-2, "max_steps": 3, "val_every": 100, "ckpt_every": 100, "ema_decay": 0.5,
                  "ema_bn_batches": 1},
    })
    out = tmp_path / "runs"
    out.mkdir()
    # the two ranks are spawned from a fresh interpreter, as torchrun starts its workers: in the suite's own process
    # (after many other tests) the run hung in CI, and a hang here must fail within minutes, not block CI
    spawn = ("import sys; sys.path.insert(0, sys.argv[1]); import torch.multiprocessing as mp; "
             "from test_training_ddp import _interrupt_worker; "
             "mp.spawn(_interrupt_worker, args=(2, [int(p) for p in sys.argv[2:5]], *sys.argv[5:8]), nprocs=2)")
    subprocess.run([sys.executable, "-c", spawn, str(Path(__file__).parent), *map(str, _free_ports(3)),
                    str(store), str(out), cfg.to_json()], check=True, timeout=120,
                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C acts as in a shell
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == [{"step": 3}, {"step": 2, "interrupted": True, "saved": True}, {"step": 3}]
    assert r1 == [{"step": 3}, {"step": 2, "interrupted": True, "saved": False}, {"step": 3}]
    a, b = (torch.load(out / n / "last.pt", weights_only=True) for n in ("full", "part"))
    assert a["step"] == b["step"] == 3
    for key in ("model", "model_stepped"):
        assert a[key].keys() == b[key].keys()
        for k, v in a[key].items():
            assert torch.equal(v, b[key][k]), (key, k)
