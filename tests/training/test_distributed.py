"""Data-parallel training through torchrun: two CPU processes with the gloo backend."""

import os
import subprocess
import sys
from pathlib import Path

from service.models import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_two_processes_write_one_checkpoint(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "training",
        "ae",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--max-batches",
        "3",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = load_checkpoint(tmp_path / "ae")
    assert checkpoint.metadata["world_size"] == 2
    assert checkpoint.metadata["history"][0]["train_loss"] > 0
