"""The layers, as the README states them: each imports only the layers below it,

    process (``__main__``, ``workers``, ``accept``) → HTTP (``service.api``)
    → engine (``service.engine``) → ``settings`` → model code (``service.models``)
    → the helpers beneath all (``runtime``, ``logs``, ``tracing``, the package's version),

with one narrowing: the HTTP layer reaches the model code only through the engine's public
names. ``training`` may import the engine and what is below it; nothing in the service imports
``training``. The engine and the model code import no web framework, not even indirectly."""

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import service
import service.engine
import service.models
import training

ROOT = Path(__file__).resolve().parents[2]
ORDER = ["process", "http", "engine", "settings", "models", "base"]
# each layer, and the layers it may import besides its own
ALLOWED = {layer: set(ORDER[i + 1 :]) for i, layer in enumerate(ORDER)}
ALLOWED["http"].discard("models")
ALLOWED["training"] = set(ORDER[ORDER.index("engine") :])


PROCESS = {"service.__main__", "service.workers", "service.accept"}


def _layer(module: str) -> str:
    for prefix, layer in (
        ("service.settings", "settings"),
        ("service.api", "http"),
        ("service.engine", "engine"),
        ("service.models", "models"),
        ("training", "training"),
    ):
        if module == prefix or module.startswith(f"{prefix}."):
            return layer
    # the package itself and its other top-level modules (runtime, logs...): helpers beneath all
    return "process" if module in PROCESS else "base"


def _modules(package) -> list[str]:
    """``package`` and every module under it, by dotted name."""
    found = pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
    return [package.__name__, *(info.name for info in found)]


def _path(module: str) -> Path:
    path = ROOT / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(module: str, known: set[str]) -> set[str]:
    """The service and training modules ``module`` imports (``TYPE_CHECKING`` ones too)."""
    path = _path(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            parent = parts[: len(parts) - node.level + 1] if node.level else []
            origin = ".".join([*parent, *([node.module] if node.module else [])])
            found.add(origin)
            # ``from .. import workers`` imports the module service.workers
            found |= {f"{origin}.{a.name}" for a in node.names} & known
    return {m for m in found if m.split(".")[0] in ("service", "training")}


def test_each_layer_imports_only_the_layers_below_it():
    modules = _modules(service) + _modules(training)
    known = set(modules)
    assert {"service.api.routes", "service.workers", "training.train"} <= known
    wrong = []
    for module in modules:
        layer = _layer(module)
        for imported in _imports(module, known):
            other = _layer(imported)
            if other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{module} ({layer}) imports {imported} ({other})")
    assert wrong == []


FORBIDDEN = ("fastapi", "starlette", "service.api")

# run in a fresh interpreter: this test process has imported the whole app already
_PROBE = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


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
