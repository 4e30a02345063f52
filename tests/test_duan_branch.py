"""experiments/duan/branch.sh: every seed of a finished model branched into runs named as the ablation names them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from ddsa_sim.training.checkpoint import load_checkpoint
from ddsa_sim.training.synthetic import write_synthetic_store

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "duan" / "branch.sh"
TINY = {
    "seed": 0,
    "num_threads": 1,
    "data": {"crop_size": 32, "patch_size": 32, "batch_size": 2, "in_memory": True, "max_val_samples": 2},
    "model": {"base_channels": 4, "depth": 2},
    "optim": {"max_steps": 3, "val_every": 100, "ckpt_every": 100, "log_every": 100},
}


def _branch(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"SEEDS": "0", "PARALLEL": "0", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)


def test_branch_sh_starts_each_seed_from_its_source_and_keeps_a_finished_branch(tmp_path):
    out = tmp_path / "out"
    store = write_synthetic_store(out / "data" / "train_x.zarr", splits={"train": 2, "val": 1}, per_ct=2, size=32)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    source = out / "runs" / "net_x_s0"
    subprocess.run([Path(sys.executable).parent / "ddsa-sim", "train", str(config), "--data", str(store),
                    "-o", str(source)], check=True, capture_output=True)
    refused = _branch(str(out), "net_x", "net_b_x", str(config), "5")
    assert refused.returncode == 2 and f"{source} has not finished" in refused.stderr
    (out / "runs" / "net_x_s0.done").touch()
    r = _branch(str(out), "net_x", "net_b_x", str(config), "5")
    assert r.returncode == 0, r.stderr
    run = out / "runs" / "net_b_x_s0"
    assert yaml.safe_load((out / "runs" / "net_b_x_s0.yaml").read_text()) == {"base": str(config), "seed": 0}
    assert json.loads((run / "branch.json").read_text()) == {"checkpoint": str(source / "last.pt"), "step": 3}
    assert load_checkpoint(run / "last.pt")["step"] == 5 and (out / "runs" / "net_b_x_s0.done").is_file()
    mtime = (run / "last.pt").stat().st_mtime_ns
    assert _branch(str(out), "net_x", "net_b_x", str(config), "5").returncode == 0
    assert (run / "last.pt").stat().st_mtime_ns == mtime  # a finished branch is kept
