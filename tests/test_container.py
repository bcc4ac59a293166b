"""The image for real, with podman: built from the Dockerfile, run unprivileged on a read-only
root, answering as the service does outside it, healthy, stopping gracefully; and the compose
files brought up (train job, then the api). Skipped without podman or the base image, unless
``UNCONV_REQUIRE_CONTAINER=1`` (set by ``.ci/run``, which runs ``.ci/containers``) makes them
fail. Figures for docs/deployment.md land in ``test-artefacts/container/figures.json``."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.podman import ARTEFACTS, ROOT, build_image, missing, podman, wait_ready
from tests.servers import free_port, running_service

pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]

COMPOSE = Path(
    os.environ.get("UNCONV_PODMAN_COMPOSE", ROOT / ".cache/podman-compose/bin/podman-compose")
)
SAMPLES = ROOT / "service" / "api" / "static" / "samples"
FIGURES: dict[str, float] = {}


def _record(**figures: float) -> None:
    FIGURES.update(figures)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


@pytest.fixture(scope="module")
def image() -> str:
    """The real Dockerfile built offline (no ImageNet weights), once."""
    tag, build_s, size_mb = build_image()
    _record(build_s=round(build_s, 1), image_mb=size_mb)
    return tag


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """ae, vae (with its label prior) and cnn from ``python -m training``, one epoch of three
    batches each, written on the host as its own user: the container's uid 10001 must read them
    through a read-only mount."""
    directory = tmp_path_factory.mktemp("volume") / "ckpt"
    command = [sys.executable, "-m", "training"]
    options = ["--epochs", "1", "--max-batches", "3", "--out", str(directory), "--no-progress"]
    runs = [
        subprocess.Popen(
            [*command, model, *options], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for model in ("ae", "vae", "cnn")
    ]
    for run in runs:
        output = run.communicate(timeout=600)[0].decode()
        assert run.returncode == 0, output[-3000:]
    directory.parent.chmod(0o755)  # pytest's temporary directories are the user's alone
    return directory


def _run(image: str, checkpoints: Path, *env: str) -> tuple[str, str]:
    """``podman run`` as docs/deployment.md says, hardened as in docker-compose.yml; (name,
    url) once ready."""
    name, port = f"unconv-test-{os.getpid()}-{free_port()}", free_port()
    podman(
        "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "-p", f"127.0.0.1:{port}:8000",
        "-v", f"{checkpoints}:/checkpoints:ro", "-e", "UNCONV_DEVICE=cpu", *env, image,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    logs = lambda: podman("logs", name, check=False).stderr  # noqa: E731
    wait_ready(url, 120, logs)
    return name, url


@pytest.fixture(scope="module")
def container(image, checkpoints):
    start = time.monotonic()
    name, url = _run(image, checkpoints)
    _record(run_to_ready_s=round(time.monotonic() - start, 1))
    yield name, url
    podman("rm", "-f", name, check=False)


def test_runs_as_uid_10001_on_a_read_only_root(container):
    name, _ = container
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    inspect = json.loads(podman("inspect", name).stdout)[0]
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    denied = podman("exec", name, "touch", "/app/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert podman("exec", name, "touch", "/tmp/x", check=False).returncode == 0


def test_the_image_healthcheck_passes(image, container):
    config = json.loads(podman("image", "inspect", image).stdout)[0]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])  # kept: --format docker
    assert podman("healthcheck", "run", container[0]).returncode == 0


def _npy(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def _vae_json(response: httpx.Response) -> np.ndarray:
    """The reconstruction's pixels (0..1) and the latent mean and log-variance, in one array."""
    assert response.status_code == 200, response.text
    image = response.json()["images"][0]
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(image["image_png"])))) / 255
    return np.concatenate([pixels.ravel(), image["mean"], image["log_var"]])


def _calls(client: httpx.Client) -> dict[str, object]:
    digit = (SAMPLES / "digit-7.png").read_bytes()
    file = {"file": ("digit-7.png", digit, "image/png")}
    models = client.get("/models")
    assert models.status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    mnist = {m["name"]: m for m in models.json()["models"] if m["name"] in {"ae", "vae", "cnn"}}
    reconstruct = {"model": "vae", "format": "json"}
    generate = {"n": 4, "label": 3, "seed": 7, "format": "npy"}
    visualise = {"network": "cnn", "layer": 4, "k": 3, "format": "npy"}
    return {
        "models": mnist,
        "page": page.text,
        "reconstruct": _vae_json(client.post("/reconstruct", files=file, data=reconstruct)),
        "generate": _npy(client.post("/generate", json=generate)),
        "visualise": _npy(client.post("/visualise", files=file, data=visualise)),
    }


def test_answers_as_the_service_does_outside_the_container(container, checkpoints, tmp_path):
    with httpx.Client(base_url=container[1], timeout=30) as client:
        inside = _calls(client)
    with (
        running_service(checkpoints, tmp_path / "outside.log", UNCONV_DEVICE="cpu") as (_, url),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        outside = _calls(client)
    assert set(inside["models"]) == {"ae", "vae", "cnn"}
    assert inside["models"] == outside["models"] and inside["page"] == outside["page"]
    for name in ("reconstruct", "generate", "visualise"):
        assert inside[name].shape == outside[name].shape, name
        tolerance = 1 / 255 if name == "reconstruct" else 1e-5  # a grey level at most
        np.testing.assert_allclose(inside[name], outside[name], atol=tolerance, err_msg=name)


def test_podman_stop_lets_requests_in_flight_finish(image, checkpoints):
    # each request waits 3 s for a batch to fill: still in flight when SIGTERM arrives
    name, url = _run(image, checkpoints, "-e", "UNCONV_MAX_DELAY_MS=3000")
    try:
        with ThreadPoolExecutor(8) as pool:
            body = {"n": 2, "seed": 1, "format": "json"}
            futures = [
                pool.submit(httpx.post, f"{url}/generate", json=body, timeout=60) for _ in range(8)
            ]
            time.sleep(1.0)
            start = time.monotonic()
            stop = podman("stop", "--time", "30", name)
            stopped_s = time.monotonic() - start
            statuses = [f.result().status_code for f in futures]
        assert statuses == [200] * 8
        assert stopped_s < 25, f"SIGTERM ignored: podman stop took {stopped_s:.1f} s"
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, stop.stderr
    finally:
        podman("rm", "-f", name, check=False)


def test_compose_trains_into_the_volume_then_serves(image):
    if not COMPOSE.is_file():
        missing(f"podman-compose is missing at {COMPOSE}")
    port = free_port()
    env = os.environ | {"UNCONV_PUBLISH_PORT": str(port), "UNCONV_VARIANT": "cuda"}
    files = ["-f", "docker-compose.yml", "-f", "docker-compose.cpu.yml"]

    def compose(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(COMPOSE), *files, *args], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    compose("down", "--volumes")  # a previous run's leftovers
    try:
        start = time.monotonic()
        up = compose("up", "-d", timeout=1500)
        (ARTEFACTS / "compose-up.log").write_text(up.stdout + up.stderr)
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 1200, lambda: compose("logs").stdout)
        _record(compose_up_to_ready_s=round(time.monotonic() - start, 1))
        train = json.loads(podman("inspect", "unconv_train_1").stdout)[0]["State"]
        assert train["ExitCode"] == 0
        models = {m["name"]: m for m in httpx.get(f"{url}/models").json()["models"]}
        assert all(models[name]["available"] for name in ("ae", "vae", "cnn")), models
        sevens = httpx.post(f"{url}/generate", json={"n": 4, "label": 7, "format": "npy"})
        assert _npy(sevens).shape == (4, 1, 28, 28)
    finally:
        down = compose("down", "--volumes")
        (ARTEFACTS / "compose-down.log").write_text(down.stdout + down.stderr)
