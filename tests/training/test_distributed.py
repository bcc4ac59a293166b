"""Data-parallel training through torchrun: two CPU processes with the gloo backend train as one
process would on the same global batches, each on its own half of every batch."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from service.models import ConvAEConfig, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
GLOBAL_BATCH, STEPS, EPOCHS, LR = 8, 3, 2, 1e-4


def _torchrun(tmp_path) -> list[dict[str, torch.Tensor]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
        str(ROOT / "tests" / "training" / "ddp_worker.py"),
        str(tmp_path),
        *("ae", "--device", "cpu", "--epochs", str(EPOCHS), "--max-batches", str(STEPS)),
        *("--batch-size", str(GLOBAL_BATCH), "--optimiser", "sgd", "--schedule", "constant"),
        *("--lr", str(LR), "--out", str(tmp_path), "--no-progress"),
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [load_file(tmp_path / f"rank{rank}.safetensors") for rank in (0, 1)]


def _params(record: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in record.items() if k.startswith(prefix + ".")}


def _steps():
    return [(epoch, step) for epoch in range(EPOCHS) for step in range(STEPS)]


def test_two_processes_train_as_one_on_each_global_batch(tmp_path):
    ranks = _torchrun(tmp_path)

    # --batch-size is the global batch: each process takes a disjoint half of every one
    for epoch, step in _steps():
        halves = [set(r[f"indices.{epoch}.{step}"].tolist()) for r in ranks]
        assert [len(h) for h in halves] == [GLOBAL_BATCH // 2] * 2, (epoch, step)
        assert not halves[0] & halves[1], (epoch, step)
    first_epoch = {i for r in ranks for s in range(STEPS) for i in r[f"indices.0.{s}"].tolist()}
    assert len(first_epoch) == STEPS * GLOBAL_BATCH  # no image twice within an epoch

    # both processes end with the same parameters, from the same start
    initial, final = _params(ranks[0], "initial"), _params(ranks[0], "final")
    for name, value in _params(ranks[1], "initial").items():
        assert torch.equal(value, initial[name]), name
    for name, value in _params(ranks[1], "final").items():
        assert torch.equal(value, final[name]), name
    assert any(not torch.equal(final[name], initial[name]) for name in final)

    # ... which are what one process gets with plain SGD on the same global batches: the mean
    # over the batch of the binary cross-entropy summed over each image's pixels
    model = ConvAEConfig().build("binomial")
    model.load_state_dict(initial)
    optimiser = torch.optim.SGD(model.parameters(), lr=LR)
    for epoch, step in _steps():
        x = torch.cat([r[f"x.{epoch}.{step}"] for r in ranks])
        y = torch.cat([r[f"y.{epoch}.{step}"] for r in ranks])
        loss = F.binary_cross_entropy_with_logits(model(x), y, reduction="sum") / len(x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(final[name], value, rtol=1e-4, atol=1e-5, msg=name)

    # rank 0 wrote the checkpoint of those parameters
    checkpoint = load_checkpoint(tmp_path / "ae")
    assert checkpoint.metadata["world_size"] == 2
    assert checkpoint.metadata["batch_size"] == GLOBAL_BATCH
    for name, value in checkpoint.model.state_dict().items():
        assert torch.equal(value, final[name]), name
