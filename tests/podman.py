"""What the container tests share: podman itself, and the image built from the Dockerfile once
per module (podman's layer cache makes a second build with the same files take seconds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = os.environ.get("UNCONV_BASE_IMAGE", "localhost/debian-python:bookworm")
IMAGE = "localhost/unconv:cuda"  # the tag docker-compose.yml and deploy/k8s run
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # pip reaches PyPI through a proxy with this CA
ARTEFACTS = ROOT / "test-artefacts" / "container"

# a first build's peak on the disk and in TMPDIR, measured (df every 2 s) with some room spare
DISK_NEEDED_GB = 12
SHM_NEEDED_GB = 8


def _free_gb(path: str) -> float:
    return shutil.disk_usage(path).free / 1e9 if os.path.isdir(path) else 0.0


def missing(what: str) -> None:
    """Skip for want of ``what``, or fail where ``UNCONV_REQUIRE_CONTAINER=1`` (CI)."""
    if os.environ.get("UNCONV_REQUIRE_CONTAINER") == "1":
        pytest.fail(f"{what}; UNCONV_REQUIRE_CONTAINER=1 needs it (.ci/containers installs it)")
    pytest.skip(f"{what}; .ci/containers installs it (as root)")


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """``podman args``; an AssertionError with its stderr when it fails and ``check``."""
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)}: {result.returncode}\n{result.stderr[-3000:]}"
        )
    return result


def wait_ready(url: str, timeout_s: float, logs: Callable[[], str]) -> float:
    """Seconds until ``url``/readyz answers 200; an AssertionError with ``logs()`` after
    ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout_s} s:\n{logs()[-4000:]}")


def build_image() -> tuple[str, float, int]:
    """The real Dockerfile built offline (no ImageNet weights); (tag, seconds, size in MB)."""
    if shutil.which("podman") is None:
        missing("podman is not installed")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        missing(f"the base image {BASE_IMAGE} is missing")
    # a layer is written about three times while it is committed: the container's files, a
    # temporary tar (under TMPDIR, twice) and the stored layer; the temporary copies go to
    # memory where /dev/shm has room, and the disk must hold the rest (CI once ran out)
    in_memory = _free_gb("/dev/shm") >= SHM_NEEDED_GB
    environment = os.environ | ({"TMPDIR": "/dev/shm"} if in_memory else {})
    needed = DISK_NEEDED_GB if in_memory else DISK_NEEDED_GB + SHM_NEEDED_GB
    graph_root = podman("info", "--format", "{{.Store.GraphRoot}}").stdout.strip()
    if _free_gb(graph_root) < needed:
        missing(f"{graph_root} has {_free_gb(graph_root):.1f} GB free, a build needs {needed}")
    start = time.monotonic()
    build = subprocess.run(
        [
            *("podman", "build", "--format", "docker", "--network", "host"),
            *("-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"),
            *("--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "--build-arg", "IMAGENET_WEIGHTS=skip"),
            *("-t", IMAGE, str(ROOT)),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env=environment,
    )
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / "build.log").write_text(build.stdout + build.stderr)
    assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    return IMAGE, time.monotonic() - start, round(size / 1e6)
