"""The layers: the engine (``service.engine``) and the model code (``service.models``) know
nothing of HTTP. A fresh interpreter imports every module of both and must not have imported
FastAPI, Starlette or the HTTP layer (``service.api``) on the way."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import service.engine
import service.models

ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = ("fastapi", "starlette", "service.api")

# run in a fresh interpreter: this test process has imported the whole app already
_PROBE = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def _modules(package) -> list[str]:
    """``package`` and every module under it, by dotted name."""
    found = pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
    return [package.__name__, *(info.name for info in found)]


def test_the_engine_and_the_models_import_no_web_framework():
    names = _modules(service.engine) + _modules(service.models)
    assert "service.engine.batcher" in names and "service.models.deconvnet" in names
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(names)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    imported = json.loads(probe.stdout)
    leaked = [m for m in imported if any(m == f or m.startswith(f"{f}.") for f in FORBIDDEN)]
    assert leaked == [], f"importing the engine and the models imported {leaked}"
