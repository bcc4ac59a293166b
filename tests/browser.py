"""For the browser tests: the real service in a subprocess on loopback, Debian's Chromium driven
by Playwright, and axe-core. Without Chromium, Playwright or axe-core the tests skip, unless
``UNCONV_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes them fail."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

import devkit.server
from devkit.server import ROOT

CHROMIUM = Path(os.environ.get("UNCONV_CHROMIUM", "/usr/bin/chromium"))
AXE = Path(os.environ.get("UNCONV_AXE", ROOT / ".cache/axe/node_modules/axe-core/axe.min.js"))
ARTEFACTS = ROOT / "test-artefacts" / "web"


def missing(what: str) -> None:
    """Skip (locally) or fail (CI) because ``what`` is not installed."""
    if os.environ.get("UNCONV_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what}; UNCONV_REQUIRE_BROWSER=1 needs it (.ci/run installs it)")
    pytest.skip(f"{what}; `make browser` and `apt-get install chromium` install it")


@contextmanager
def running_service(env: dict[str, str], log: Path, timeout_s: float = 180):
    """``python -m uvicorn service.api:app`` on a free loopback port; yields its base URL once
    every model is loaded."""
    args = ("service.api:app", "--port", "{port}")
    env = {"PYTHONPATH": str(ROOT)} | env
    try:
        with devkit.server.running_service(env, log, "uvicorn", args, timeout_s) as served:
            yield served.url
    except RuntimeError as error:  # never ready
        pytest.fail(str(error))


def launch_chromium(playwright):
    """Headless Chromium from Debian's package (a Playwright browser download cannot work here)."""
    if not CHROMIUM.exists():
        missing(f"no Chromium at {CHROMIUM}")
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )


def axe_violations(page, impacts=("serious", "critical")) -> list[str]:
    """axe-core's violations of the given impacts on the page as it is, one line each."""
    if not AXE.exists():
        missing(f"no axe-core at {AXE}")
    # evaluated through the DevTools protocol: a script tag would break the page's CSP
    page.evaluate(AXE.read_text())
    violations = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in violations
        if v["impact"] in impacts
    ]
