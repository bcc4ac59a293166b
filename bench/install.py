"""What an install costs: the time and disk of a fresh virtual environment for the client alone,
the client with its extras, and the service (its serving dependencies, as ``make serve``
installs them). Writes docs/install.json; docs/deployment.md quotes it.

Usage: ``python -m bench.install [--skip-service]`` from the repository root. Each environment
is made anew in a temporary folder with ``python3 -m venv``; pip's own cache stays warm between
runs, as it would on a user's machine that installed anything before.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "install.json"

# what each environment installs, as a user types it (from the repository root)
TARGETS = {
    "empty": [],
    "client": ["./client"],
    "client_all": ["./client[all]"],
    "service": ["-r", "requirements/serve.txt", "--no-deps", "-e", "."],
}


def _megabytes(path: Path) -> float:
    used = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return round(int(used.stdout.split()[0]) / 1024, 1)


def measure(name: str, args: list[str]) -> dict:
    """Make a fresh venv, install ``args`` into it; the seconds pip took and the venv's MB."""
    with tempfile.TemporaryDirectory(prefix=f"unconv-install-{name}-") as folder:
        venv = Path(folder) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        started = time.perf_counter()
        if args:
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args]
            subprocess.run(pip, cwd=ROOT, check=True)
        seconds = round(time.perf_counter() - started, 1)
        return {"install_s": seconds, "size_mb": _megabytes(venv)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-service", action="store_true", help="measure the client's environments only"
    )
    args = parser.parse_args()
    results = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    for name, target in TARGETS.items():
        if name == "service" and args.skip_service:
            continue
        results[name] = measure(name, target)
        print(f"{name}: {results[name]}", flush=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
