"""This process's place in a torchrun job: world size, rank and device, and the process group."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import distributed as dist

from service.models import resolve_device


@dataclass(frozen=True)
class World:
    """This process's place in a (possibly one-process) data-parallel run."""

    size: int
    rank: int
    device: torch.device

    @classmethod
    def join(cls, device_name: str) -> World:
        """Read ``torchrun``'s environment and join its process group when there is one."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(device_name, local_rank)
        if size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(size, rank, device)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def leave(self) -> None:
        if self.size > 1:
            dist.destroy_process_group()
