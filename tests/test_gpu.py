"""CUDA checks; skipped without a GPU, run when one is lent."""

import pytest
import torch
from torchvision import models

from service.models import UndoableSequential
from tests.helpers import png_bytes

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_projection_on_cuda_matches_the_cpu_and_is_deterministic():
    torch.manual_seed(0)
    features = models.alexnet().features.eval()
    x = torch.randn(4, 3, 224, 224)
    cpu = UndoableSequential(features).visualise(x, layer=12, k=9).projection
    gpu_seq = UndoableSequential(features).cuda()
    first = gpu_seq.visualise(x.cuda(), layer=12, k=9).projection
    again = gpu_seq.visualise(x.cuda(), layer=12, k=9).projection
    assert torch.equal(first, again)  # sum-unpooling: no atomics, bit-identical runs
    scale = cpu.abs().max().item()
    torch.testing.assert_close(first.cpu(), cpu, rtol=1e-3, atol=1e-4 * scale)


async def test_service_batches_on_cuda(make_client):
    client, app = await make_client(device="cuda", networks=["alexnet"], max_delay_ms=100)
    assert app.state.service.device.type == "cuda"
    r = await client.post(
        "/visualise",
        files={"file": ("x.png", png_bytes((224, 224), "RGB"))},
        data={"layer": "5", "format": "npy"},
    )
    assert r.status_code == 200
    r = await client.post("/generate", json={"n": 64, "seed": 0, "format": "npy"})
    assert r.status_code == 200
