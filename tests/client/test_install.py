"""The client as a user gets it: ``pip install ./client`` into a fresh virtual environment with
no torch, its CLI and API against ``python -m service``, then the README's example after the
README's one-line install."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import venv

import pytest
import torch
from PIL import Image

from service.models import MNIST_NORMALISATION, ConvVAEConfig, save_checkpoint
from tests.helpers import png_bytes
from tests.servers import ROOT, running_service

README = (ROOT / "README.md").read_text()
PIP = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def _run(*command, cwd=ROOT, check=True, timeout=300):
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **PIP},
    )
    if check:
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def _installed(python) -> set[str]:
    listed = _run(python, "-m", "pip", "list", "--format=freeze").stdout
    return {line.split("==")[0].lower() for line in listed.splitlines()}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A fresh virtual environment (pip's cache reused) holding ``./client`` alone."""
    home = tmp_path_factory.mktemp("client-venv") / "venv"
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "./client")
    return home


@pytest.fixture(scope="module")
def service(checkpoint_dir, hub_dir, tmp_path_factory):
    """``python -m service`` with AlexNet and a ``vae`` that knows the digits 0-9."""
    served = tmp_path_factory.mktemp("served")
    for path in checkpoint_dir.glob("*.*"):
        if not path.name.startswith(("vae.", "broken.")):
            shutil.copy(path, served / path.name)
    config = ConvVAEConfig(
        hid_channels=4,
        code_channels=4,
        hidden_features=8,
        latent_features=4,
        labels=tuple("0123456789"),
    )
    torch.manual_seed(0)
    save_checkpoint(
        served / "vae", config.build("binomial"), config, MNIST_NORMALISATION, "binomial"
    )
    log = served / "server.log"
    with running_service(
        served,
        log,
        module="devkit.fake_weights",
        TORCH_HOME=str(hub_dir),
        UNCONV_NETWORKS="alexnet",
    ) as (_, url):
        yield url


def test_pip_install_client_brings_no_torch_and_its_cli_and_api_answer(env, service, tmp_path):
    python = env / "bin" / "python"
    assert {"torch", "torchvision", "pillow", "numpy"}.isdisjoint(_installed(python))
    assert "httpx" in _installed(python) and "unconv-client" in _installed(python)
    assert _run(python, "-c", "import torch", check=False).returncode == 1

    grid = tmp_path / "grid.png"
    _run(env / "bin" / "unconv-client", "--url", service, "generate", "--n", "4", "-o", grid)
    with Image.open(grid) as image:
        assert image.size == (4 * 30 + 2, 32)
    done = _run(
        python, "-m", "unconv_client", "--url", service, "generate", "--model", "gan", check=False
    )
    assert done.returncode == 1 and "404 unknown_model" in done.stderr

    script = (
        "import sys\nfrom unconv_client import UnconvClient\n"
        "with UnconvClient(sys.argv[1]) as client:\n"
        "    answer = client.generate(n=2, seed=1)\n"
        "    print(type(answer).__name__, repr(answer), len(client.models()))\n"
        "    sys.stdout.buffer.write(answer)\n"
    )
    done = subprocess.run([python, "-c", script, service], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    line, _, png = done.stdout.partition(b"\n")
    assert line.startswith(b"PngBytes") and b"unconv-client[pillow]" in line
    assert Image.open(io.BytesIO(png)).size == (2 * 30 + 2, 32)


def test_the_readme_example_runs_after_its_one_line_install(env, service, tmp_path):
    install = re.search(r"```sh\n(pip install \S+)", README).group(1)
    example = re.search(r"```python\n(from unconv_client import .+?)```", README, re.S).group(1)
    pip, command, requirement = install.split()
    python = env / "bin" / "python"
    _run(python, "-m", pip, command, "--quiet", requirement.strip('"'))
    assert "torch" not in _installed(python)

    Image.open(io.BytesIO(png_bytes((224, 224), "RGB"))).save(tmp_path / "cat.jpg")
    for name, seed in (("digit.png", 1), ("a.png", 2), ("b.png", 3)):
        (tmp_path / name).write_bytes(png_bytes(seed=seed))
    script = tmp_path / "example.py"
    script.write_text(example.replace("http://127.0.0.1:8000", service))
    done = _run(python, script, cwd=tmp_path)
    assert done.stdout.splitlines()[-1] == "404 unknown_model"
    for name, size in (("layer5.png", (224, 224)), ("rec.png", (2 * 30 + 2, 32))):
        with Image.open(tmp_path / name) as image:
            assert image.size == size, name
    with Image.open(tmp_path / "threes.png") as image:
        assert image.size == (8 * 30 + 2, 32)
