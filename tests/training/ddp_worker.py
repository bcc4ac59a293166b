"""Run by ``torchrun`` in test_distributed.py: ``python -m training`` with a recorder.

Each process writes ``<record_dir>/rank<N>.safetensors``: the parameters before and after
training, and for every step the dataset indices, inputs and targets that this process trained on.
Usage: ``torchrun ... tests/training/ddp_worker.py <record_dir> <python -m training arguments>``.
"""

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from training import __main__ as cli
from training import train as train_module

record_dir, argv = Path(sys.argv[1]), sys.argv[2:]
record: dict[str, torch.Tensor] = {}
fetched: list[torch.Tensor] = []  # dataset indices of every batch fetched, in order
train_one_epoch, getitem = train_module.train_one_epoch, train_module._Indexed.__getitem__


def _fetch(self, indices):
    fetched.append(torch.as_tensor(indices).clone())
    return getitem(self, indices)


def _params(prefix: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)  # inside DistributedDataParallel
    # contiguous copies: training keeps convolution weights channels-last, safetensors refuses them
    return {
        f"{prefix}.{k}": v.detach().clone(memory_format=torch.contiguous_format)
        for k, v in model.state_dict().items()
    }


def _recording_epoch(model, batches, optimiser, criterion, device, scheduler, max_batches):
    epoch = sum(k.startswith("x.") and k.endswith(".0") for k in record)
    if epoch == 0:
        record.update(_params("initial", model))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def tapped():
        for x, y in batches:
            seen.append((x.clone(), y.clone()))
            yield x, y

    fetched.clear()
    losses = train_one_epoch(model, tapped(), optimiser, criterion, device, scheduler, max_batches)
    steps = min(len(seen), max_batches or len(seen))  # the loop looks one batch past the last
    for step in range(steps):
        record[f"x.{epoch}.{step}"], record[f"y.{epoch}.{step}"] = seen[step]
        record[f"indices.{epoch}.{step}"] = fetched[step]
    record.update(_params("final", model))
    return losses


train_module.train_one_epoch = _recording_epoch
train_module._Indexed.__getitem__ = _fetch
code = cli.main(argv)
save_file(record, record_dir / f"rank{os.environ['RANK']}.safetensors")
sys.exit(code)
