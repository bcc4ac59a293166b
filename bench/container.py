"""The container's figures: the image's size, its build time, and the time from ``podman run``
(and from ``podman-compose up``) to ``/readyz`` answering 200. Writes docs/container.json;
docs/deployment.md quotes it.

Usage: ``python -m bench.container`` from the repository root, as root on a machine where
``.ci/containers`` has run. The figures are measured by the container tests themselves
(tests/test_container.py records them in ``test-artefacts/container/figures.json`` as it builds,
runs and brings up the image); this runs them and keeps that record with the date.
``--reuse`` keeps the record of the last run instead of running the tests again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "test-artefacts" / "container" / "figures.json"
OUT = ROOT / "docs" / "container.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", action="store_true", help="keep the last run's record")
    args = parser.parse_args()
    if not args.reuse:
        RECORD.unlink(missing_ok=True)
        env = os.environ | {"UNCONV_REQUIRE_CONTAINER": "1"}
        tests = [sys.executable, "-m", "pytest", "tests/test_container.py", "-q"]
        subprocess.run(tests, cwd=ROOT, env=env, check=True)
    figures = json.loads(RECORD.read_text())
    stamp = datetime.datetime.fromtimestamp(RECORD.stat().st_mtime, datetime.UTC)
    results = {"date": stamp.date().isoformat(), "cores": os.cpu_count()} | figures
    results["machine"] = platform.machine()
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {figures}")


if __name__ == "__main__":
    main()
