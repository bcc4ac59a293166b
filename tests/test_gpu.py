"""CUDA checks; skipped without a GPU, run when one is lent."""

import asyncio
import io

import httpx
import numpy as np
import pytest
import torch
from torchvision import models

from service.models import UndoableSequential, exact_convolutions, load_checkpoint
from tests.helpers import png_bytes, spy
from tests.servers import child_processes, running_service, served_checkpoints, stopped

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_projection_on_cuda_matches_the_cpu_and_is_deterministic_as_the_service_runs_it():
    exact_convolutions()  # what the service does on CUDA
    torch.manual_seed(0)
    features = models.alexnet().features.eval()
    x = torch.randn(4, 3, 224, 224)
    cpu = UndoableSequential(features).visualise(x, layer=12, k=9).projection
    gpu_seq = UndoableSequential(features).cuda()
    first = gpu_seq.visualise(x.cuda(), layer=12, k=9).projection
    again = gpu_seq.visualise(x.cuda(), layer=12, k=9).projection
    assert torch.equal(first, again)  # no atomics left: bit-identical runs
    scale = cpu.abs().max().item()
    torch.testing.assert_close(first.cpu(), cpu, rtol=1e-3, atol=1e-4 * scale)


async def test_service_batches_on_cuda(make_client, checkpoint_dir):
    client, app = await make_client(device="cuda", networks=["alexnet"], max_delay_ms=200)
    assert app.state.engine.device.type == "cuda"
    images = [png_bytes((224, 224), "RGB", seed=s) for s in range(4)]

    async def visualise(image):
        r = await client.post(
            "/visualise", files={"file": ("x.png", image)}, data={"layer": "5", "format": "npy"}
        )
        assert r.status_code == 200, r.text
        return torch.from_numpy(np.load(io.BytesIO(r.content)))

    alone = [await visualise(image) for image in images]
    assert torch.equal(await visualise(images[0]), alone[0])  # the same upload, the same answer
    calls = spy(app, "alexnet")
    together = await asyncio.gather(*(visualise(image) for image in images))
    assert calls == [(("visualise", 5, 9, None, "deconvnet"), 4)]  # one forward pass for the four
    for a, b in zip(alone, together, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4 * a.abs().max().item())

    async def generate(seed):
        r = await client.post("/generate", json={"n": 32, "seed": seed, "format": "npy"})
        assert r.status_code == 200, r.text
        return torch.from_numpy(np.load(io.BytesIO(r.content)))

    calls = spy(app, "vae")
    samples = await asyncio.gather(generate(0), generate(1))
    assert calls == [(("generate",), 2)]
    decoder = load_checkpoint(checkpoint_dir / "vae").model.decoder  # on the CPU
    for seed, images in enumerate(samples):
        z = torch.randn(32, 6, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected = torch.sigmoid(decoder(z))
        torch.testing.assert_close(images, expected, rtol=1e-4, atol=1e-5)


def test_two_workers_share_the_gpu_and_each_answers(checkpoint_dir, tmp_path):
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    env = {"UNCONV_DEVICE": "cuda", "UNCONV_WORKERS": "2"}
    with running_service(checkpoints, tmp_path / "server.log", **env) as (server, url):
        workers = child_processes(server.pid)  # /readyz is 200: both loaded onto the GPU
        assert len(workers) == 2
        decoder = load_checkpoint(checkpoints / "vae").model.decoder  # on the CPU
        z = torch.randn(8, 6, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            expected = torch.sigmoid(decoder(z))
        request = {"n": 8, "seed": 5, "format": "npy"}
        for other in workers:  # the other worker answers while this one is stopped
            with stopped(other):
                r = httpx.post(f"{url}/generate", json=request, timeout=60)
                assert r.status_code == 200, r.text
            images = torch.from_numpy(np.load(io.BytesIO(r.content)))
            torch.testing.assert_close(images, expected, rtol=1e-4, atol=1e-5)


def test_the_atlas_on_cuda_is_the_cpus(checkpoint_dir, tmp_path):
    from safetensors.torch import load_file

    from training.__main__ import main

    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints", names=("cnn",))
    for device in ("cpu", "cuda"):
        argv = ["atlas", "--network", "cnn", "--checkpoints", str(checkpoints), "--no-progress"]
        assert main([*argv, "--device", device, "--out", str(tmp_path / device)]) == 0
    cpu, gpu = (load_file(tmp_path / d / "cnn.safetensors") for d in ("cpu", "cuda"))
    for layer in range(1, 7):
        values = cpu[f"layer{layer}.value"]
        torch.testing.assert_close(gpu[f"layer{layer}.value"], values, rtol=1e-4, atol=1e-5)
        # the same items and positions wherever no other candidate is within float noise
        clear = torch.ones_like(values, dtype=torch.bool)
        clear[:, 1:] &= (values[:, 1:] - values[:, :-1]).abs() > 1e-4
        clear[:, :-1] &= (values[:, 1:] - values[:, :-1]).abs() > 1e-4
        clear[:, -1] = False  # the next candidate, left out, may be as close
        for key in ("index", "y", "x"):
            name = f"layer{layer}.{key}"
            assert torch.equal(gpu[name][clear], cpu[name][clear]), name


@pytest.mark.parametrize(
    "fields",
    [
        {"method": "gradcam"},
        {"method": "guided_gradcam"},
        {"method": "integrated_gradients", "steps": "20"},
        {"method": "occlusion", "window": "64", "stride": "32"},
    ],
)
async def test_attribute_on_cuda_is_the_cpus(make_client, fields):
    image = png_bytes((224, 224), "RGB", seed=9)
    data = {"network": "alexnet", "target": "3", "format": "npy"} | fields
    answers = []
    for device in ("cpu", "cuda"):
        client, app = await make_client(device=device, networks=["alexnet"])
        assert app.state.engine.device.type == device
        r = await client.post("/attribute", files={"file": ("x.png", image)}, data=data)
        assert r.status_code == 200, r.text
        answers.append(torch.from_numpy(np.load(io.BytesIO(r.content))))
    cpu, cuda = answers
    assert cpu.abs().max() > 0
    # occlusion's values are differences of logits: a thousandth of the map's largest
    torch.testing.assert_close(cuda, cpu, rtol=1e-3, atol=1e-3 * cpu.abs().max().item())
