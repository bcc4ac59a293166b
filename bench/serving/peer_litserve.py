"""The peer: the same AE reconstruction served by LitServe with its own dynamic batching
(max batch 64, 5 ms timeout) and the same image code. The same PNG bytes travel as base64 JSON
(``{"image": ...}``): LitServe passes requests to its worker processes through a queue, which
cannot carry multipart uploads.

Run as a script: ``python -m bench.serving.peer_litserve PORT CHECKPOINT_DIR``.
"""

from __future__ import annotations

import base64
import sys

import litserve
import torch
from fastapi import Response

from service.engine.imaging import ImageSpec, decode_input, encode_png
from service.models import load_checkpoint


class ReconstructAPI(litserve.LitAPI):
    def __init__(self, checkpoint_dir: str):
        super().__init__(max_batch_size=64, batch_timeout=0.005)
        self.checkpoint_dir = checkpoint_dir

    def setup(self, device):
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
    server = litserve.LitServer(
        ReconstructAPI(checkpoint_dir), accelerator="cpu", api_path="/reconstruct"
    )
    server.run(port=port, log_level="warning", generate_client_file=False)
