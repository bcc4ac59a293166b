"""The peer: the same AE reconstruction served by LitServe with its own dynamic batching
(max batch 64, 5 ms timeout) and the same image code. The same PNG bytes travel as base64 JSON
(``{"image": ...}``): LitServe passes requests to its worker processes through a queue, which
cannot carry multipart uploads.

Run as a script: ``python -m bench.serving.peer_litserve PORT CHECKPOINT_DIR [WORKERS]``, with
``WORKERS`` inference worker processes (``workers_per_device``, default 1), each on its share of
the cores' torch threads, as the service's workers are.
"""

from __future__ import annotations

import base64
import os
import sys

import litserve
import torch
from fastapi import Response

from service.engine.imaging import ImageSpec, decode_input, encode_png
from service.models import load_checkpoint


class ReconstructAPI(litserve.LitAPI):
    def __init__(self, checkpoint_dir: str, workers: int = 1):
        super().__init__(max_batch_size=64, batch_timeout=0.005)
        self.checkpoint_dir = checkpoint_dir
        self.workers = workers

    def setup(self, device):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.workers))
        checkpoint = load_checkpoint(f"{self.checkpoint_dir}/ae", device)
        # the memory layout the service uses, so that the comparison is of serving alone
        self.model = checkpoint.model.to(memory_format=torch.channels_last)
        self.device = device
        self.spec = ImageSpec(1, 28, checkpoint.normalisation)

    def decode_request(self, request: dict):
        return decode_input(base64.b64decode(request["image"]), "image/png", self.spec, 10**8)

    def batch(self, inputs):
        return torch.cat(inputs)

    @torch.inference_mode()
    def predict(self, x):
        return self.model.reconstruct(x.to(self.device)).cpu()

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return Response(encode_png(output), media_type="image/png")


if __name__ == "__main__":
    port, checkpoint_dir = int(sys.argv[1]), sys.argv[2]
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    server = litserve.LitServer(
        ReconstructAPI(checkpoint_dir, workers),
        accelerator="cpu",
        api_path="/reconstruct",
        workers_per_device=workers,
    )
    server.run(port=port, log_level="warning", generate_client_file=False)
