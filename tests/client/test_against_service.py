"""The client and its CLI against the real service."""

import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from unconv_client import AsyncUnconvClient, UnconvClient, UnconvError

from tests.helpers import png_bytes
from tests.servers import ROOT, running_service


@pytest.fixture(scope="module")
def client(checkpoint_dir, hub_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("client") / "server.log"
    with (
        running_service(
            checkpoint_dir,
            log,
            module="devkit.fake_weights",
            TORCH_HOME=str(hub_dir),
            UNCONV_NETWORKS="alexnet",
            UNCONV_API_KEY="k",
        ) as (_, url),
        UnconvClient(url, api_key="k") as client,
    ):
        yield client


def test_every_endpoint_returns_images_and_arrays(client):
    grid = client.generate(n=4, seed=1)
    assert isinstance(grid, Image.Image) and grid.size == (4 * 30 + 2, 32)
    array = client.generate(n=3, seed=1, format="npy")
    assert array.shape == (3, 1, 28, 28) and array.dtype == np.float32
    details = client.generate(n=2, seed=1, format="json")
    assert details["seed"] == 1 and details["images"][0]["image"].size == (28, 28)
    rec = client.reconstruct(
        [png_bytes(seed=1), Image.new("L", (28, 28))], model="vae", format="json"
    )
    assert len(rec["images"]) == 2 and len(rec["images"][1]["mean"]) == 6
    vis = client.visualise(png_bytes((224, 224), "RGB"), layer=2, format="json")
    assert vis["image"].size == (224, 224) and len(vis["activations"]) == 9
    assert client.visualise(png_bytes((224, 224), "RGB"), layer=2, format="npy").shape == (
        3,
        224,
        224,
    )
    why = client.attribute(png_bytes(), network="cnn", method="occlusion", format="json")
    assert why["image"].size == (28, 28) and why["target"] == why["predicted"]
    assert len(why["top"]) == 5 and why["window"] == 4
    cam = client.attribute(png_bytes(), network="cnn", target=3, format="npy")
    assert cam.shape == (1, 28, 28) and cam.dtype == np.float32 and cam.min() >= 0
    assert {m["name"] for m in client.models()} >= {"ae", "vae", "cnn", "alexnet"}
    assert client.ready()["status"] == "ok"


def test_errors_carry_the_service_code(client):
    with pytest.raises(UnconvError) as info:
        client.generate(model="gan")
    assert info.value.status == 404 and info.value.code == "unknown_model"
    wrong = UnconvClient(str(client.http.base_url), api_key="wrong")
    with wrong, pytest.raises(UnconvError, match="401 unauthorized"):
        wrong.models()


async def test_async_client_has_the_same_methods(make_client):
    http, _ = await make_client()
    client = AsyncUnconvClient(http=http)
    image = await client.reconstruct(png_bytes(seed=3))
    assert image.size == (28, 28)
    assert (await client.generate(n=2, seed=0, format="npy")).shape == (2, 1, 28, 28)
    with pytest.raises(UnconvError) as info:
        await client.visualise(png_bytes(), layer=1, network="nope")
    assert info.value.code == "unknown_model"


def test_cli_against_python_m_service_and_graceful_sigterm(checkpoint_dir, tmp_path):
    log = tmp_path / "server.log"
    with running_service(checkpoint_dir, log, UNCONV_MAX_DELAY_MS="1000") as (server, url):
        out = tmp_path / "grid.png"
        cli = [sys.executable, "-m", "unconv_client", "--url", url]
        done = subprocess.run(
            [*cli, "generate", "--n", "16", "-o", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        with Image.open(out) as grid:
            assert grid.size == (8 * 30 + 2, 2 * 30 + 2)
        done = subprocess.run(
            [*cli, "reconstruct", "missing.png"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and "missing.png" in done.stderr
        done = subprocess.run(
            [*cli, "generate", "--model", "gan"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and "404 unknown_model" in done.stderr
        # a request in flight when SIGTERM arrives is still answered
        with httpx.Client(base_url=url, timeout=30) as http:
            late = {}
            pending = threading.Thread(
                target=lambda: late.update(response=http.post("/generate", json={"n": 2}))
            )
            pending.start()
            time.sleep(0.3)  # the request waits in the 1 s batching window
            server.send_signal(signal.SIGTERM)
            pending.join(30)
            assert late["response"].status_code == 200
            assert late["response"].headers["content-type"] == "image/png"
            # uvicorn re-raises the signal once its graceful shutdown is done
            assert server.wait(30) in (0, -signal.SIGTERM)
            with pytest.raises(httpx.TransportError):
                http.get("/healthz")


async def test_the_atlas_routes(make_client, checkpoint_dir, tmp_path):
    from training.__main__ import main

    for suffix in (".json", ".safetensors"):
        shutil.copy(checkpoint_dir / f"cnn{suffix}", tmp_path / f"cnn{suffix}")
    argv = ["atlas", "--network", "cnn", "--checkpoints", str(tmp_path), "--layers", "1"]
    assert main([*argv, "--no-progress"]) == 0
    http, _ = await make_client(checkpoint_dir=tmp_path)
    client = AsyncUnconvClient(http=http)
    (atlas,) = await client.atlases()
    assert atlas["network"] == "cnn" and atlas["served"]
    figure = await client.atlas("cnn", 1, 2)
    assert isinstance(figure, Image.Image)
    details = await client.atlas("cnn", 1, 2, format="json")
    entry = details["entries"][0]
    assert entry["image"].size == (28, 28)
    top, left, bottom, right = entry["box"]
    assert entry["patch"].size == entry["projection"].size == (right - left, bottom - top)
    with pytest.raises(UnconvError) as info:
        await client.atlas("vae", 1, 0)
    assert (info.value.status, info.value.code) == (404, "no_atlas")
