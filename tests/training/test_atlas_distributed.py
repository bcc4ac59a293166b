"""``torchrun -m training atlas``: two CPU processes (gloo), each scanning every other batch,
write the identical atlas to one process's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from training.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
ARGS = ("--network", "cnn", "--batch-size", "150", "--device", "cpu", "--no-progress")


def test_two_ranks_build_the_atlas_of_one(checkpoint_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
        *("-m", "training", "atlas", *ARGS),
        *("--checkpoints", str(checkpoint_dir), "--out", str(tmp_path / "two")),
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    argv = ["atlas", *ARGS, "--checkpoints", str(checkpoint_dir), "--out", str(tmp_path / "one")]
    assert main(argv) == 0

    one = load_file(tmp_path / "one" / "cnn.safetensors")
    two = load_file(tmp_path / "two" / "cnn.safetensors")
    assert one.keys() == two.keys()
    for name, tensor in one.items():
        assert torch.equal(tensor, two[name]), name
    documents = [json.loads((tmp_path / n / "cnn.json").read_text()) for n in ("one", "two")]
    assert documents[1]["scan"]["world_size"] == 2
    for document in documents:
        del document["created"], document["scan"]
    assert documents[0] == documents[1]
    assert not list((tmp_path / "two").glob("*partial*"))
