"""Shared fixtures: small checkpoints, random AlexNet weights in a private hub cache, and a
factory for apps running their real lifespan behind an httpx client."""

# ruff: noqa: E402 (the process settings are made before torch is imported)
from __future__ import annotations

from service.runtime import tune_server_process

# the apps run in this process as a server runs them, with its process settings, which must
# be made before torch is imported (an entry point's job: importing the service makes none)
tune_server_process()

from contextlib import AsyncExitStack

import httpx
import pytest
import torch

from devkit.fake_weights import own_hash_published, write_alexnet_weights
from service.api import create_app
from service.models import (
    MNIST_NORMALISATION,
    TORCHVISION_NETWORKS,
    CNNConfig,
    ConvAEConfig,
    ConvVAEConfig,
    save_checkpoint,
    torchvision_nets,
)
from service.settings import Settings
from tests.helpers import ExecutorGate

SMALL = {
    "ae": (ConvAEConfig(hid_channels=8, code_channels=4, kernel_size=3), "binomial"),
    "vae": (
        ConvVAEConfig(hid_channels=4, code_channels=8, hidden_features=32, latent_features=6),
        "binomial",
    ),
    "cnn": (CNNConfig(channels=(4, 8), hidden_features=16), None),
}


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    """ae, vae and cnn with small random weights, and a broken checkpoint."""
    directory = tmp_path_factory.mktemp("checkpoints")
    for name, (config, assumption) in SMALL.items():
        torch.manual_seed(len(name))
        save_checkpoint(
            directory / name,
            config.build(assumption),
            config,
            MNIST_NORMALISATION,
            assumption,
            {"metrics": {"score": 1.0}, "data": "synthetic", "epochs": 0},
        )
    (directory / "broken.json").write_text(
        '{"format": "unconv-checkpoint/1", "architecture": "gan"}'
    )
    return directory


@pytest.fixture(scope="session")
def hub_dir(tmp_path_factory):
    """A torch hub cache holding randomly initialised AlexNet weights under the real name."""
    home = tmp_path_factory.mktemp("torch_home")
    write_alexnet_weights(home, seed=1806)
    return home


@pytest.fixture
def torch_home(hub_dir, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(hub_dir))
    # the random weights stand in for the published file (devkit/fake_weights.py)
    weights = TORCHVISION_NETWORKS["alexnet"].weights_path
    monkeypatch.setattr(torchvision_nets, "_published", own_hash_published(weights))
    return hub_dir


@pytest.fixture
async def make_client(checkpoint_dir, torch_home):
    """``await make_client(**settings)`` -> (client, app), with models loaded."""
    async with AsyncExitStack() as stack:

        async def make(wait: bool = True, raise_app_exceptions: bool = True, **overrides):
            values = {"checkpoint_dir": checkpoint_dir, "networks": [], "max_delay_ms": 0.0}
            app = create_app(Settings(**(values | overrides)))
            await stack.enter_async_context(app.router.lifespan_context(app))
            if wait:
                await app.state.engine.wait_ready()
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
            client = httpx.AsyncClient(transport=transport, base_url="http://unconv.test")
            await stack.enter_async_context(client)
            return client, app

        try:
            yield make
        finally:
            ExecutorGate.release_all()
