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



def _interrupt_worker(rank: int, world: int, where: str, ports: list[int], store: str, out: str,
                      cfg_json: str) -> None:
    """Three runs of the same config: ``full`` uninterrupted; ``part`` with a SIGINT to rank 1 alone in its second
    step (``where``: "update", inside the step's network update; "batch", while it makes the batch, before the
    update), then resumed. Rank 0 is slow to write the interrupted run's last.pt (a loaded machine).
    Writes ``rank<r>.json``: how each run ended."""
    import json
    import time

    from ddsa_sim.training import loop

    cfg = parse_config(json.loads(cfg_json))
    name = {"update": "_generator_update", "batch": "make_training_batch"}[where]
    original, calls = getattr(loop, name), []

    def interrupted(*args):
        calls.append(1)
        if rank == 1 and len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return original(*args)

    save = loop._save_interrupted

    def slow_save(*args):
        time.sleep(2.0)
        return save(*args)

    loop._save_interrupted = slow_save
    ended = []
    for port, (run, resume, sigint) in zip(ports, (("full", False, False), ("part", False, True),
                                                   ("part", True, False))):
        os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                           "RANK": str(rank), "LOCAL_RANK": str(rank)})
        setattr(loop, name, interrupted if sigint else original)
        try:
            res = run_training(cfg, os.path.join(out, run), store=store, progress=False, resume=resume)
            ended.append({"step": res.step})
        except loop.TrainingInterrupted as exc:
            ended.append({"step": exc.step, "interrupted": True, "saved": exc.saved is not None})
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(ended, f)


@pytest.mark.parametrize("where", ["update", "batch"])
def test_ddp_a_sigint_to_one_rank_stops_both_after_the_same_step_and_resumes_exactly(tmp_path, where):
    """Rank 1 alone is interrupted in a step (in its update, or before it while making its batch): both ranks
    complete that step and stop after it (they agree; a rank that stopped alone left the other waiting in a
    collective), rank 0 writes last.pt of it before any rank returns (a resume on rank 1 had not found it and started
    from scratch), and a resume ends where an uninterrupted two-process run ends, bit for bit."""
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
    # the two ranks are spawned from a fresh interpreter, as torchrun starts its workers; a hang must fail within
    # minutes, not block CI
    spawn = ("import sys; sys.path.insert(0, sys.argv[1]); import torch.multiprocessing as mp; "
             "from test_training_ddp import _interrupt_worker; "
             "mp.spawn(_interrupt_worker, args=(2, sys.argv[2], [int(p) for p in sys.argv[3:6]], *sys.argv[6:9]), "
             "nprocs=2)")
    subprocess.run([sys.executable, "-c", spawn, str(Path(__file__).parent), where, *map(str, _free_ports(3)),
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


def _mismatch_worker(rank: int, world: int, ports: list[int], store: str, out: str, cfg_json: str) -> None:
    """A two-step run, then a run in which rank 0 resumes from its last.pt and rank 1 does not see one (as where the
    run folder is not shared between nodes). Writes ``rank<r>.json``: the second run's error."""
    import json

    from ddsa_sim import InputError

    cfg = parse_config(json.loads(cfg_json))
    error = None
    for port, resume in zip(ports, (False, rank == 0)):
        os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                           "RANK": str(rank), "LOCAL_RANK": str(rank)})
        try:
            run_training(cfg, out, store=store, progress=False, resume=resume, max_steps=2 if port == ports[0] else 3)
        except InputError as exc:
            error = str(exc)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(error, f)


def test_ddp_ranks_that_would_start_at_different_steps_are_refused_on_every_rank(tmp_path):
    """Rank 0 resumes at step 2 while rank 1 starts from scratch: both refuse in one line naming last.pt (they had
    stepped out of turn and waited on each other's collectives forever)."""
    import json

    store = write_synthetic_store(tmp_path / "s.zarr", splits={"train": 2, "val": 1}, per_ct=2, size=32)
    cfg = parse_config({"seed": 5, "num_threads": 1, "device": "cpu",
                        "data": {"crop_size": 32, "patch_size": 32, "batch_size": 2, "in_memory": True},
                        "model": {"base_channels": 4, "depth": 2}, "optim": {"max_steps": 2, "val_every": 100}})
    out = tmp_path / "run"
    spawn = ("import sys; sys.path.insert(0, sys.argv[1]); import torch.multiprocessing as mp; "
             "from test_training_ddp import _mismatch_worker; "
             "mp.spawn(_mismatch_worker, args=(2, [int(p) for p in sys.argv[2:4]], *sys.argv[4:7]), nprocs=2)")
    subprocess.run([sys.executable, "-c", spawn, str(Path(__file__).parent), *map(str, _free_ports(2)),
                    str(store), str(out), cfg.to_json()], check=True, timeout=120)
    for rank in (0, 1):
        error = json.loads((out / f"rank{rank}.json").read_text())
        assert error is not None and "different steps (0 to 2)" in error and str(out / "last.pt") in error, error
