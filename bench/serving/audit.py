"""The dependency audit of ``make stress``: ``pip-audit`` of every pinned package, and a plain
account of what it could audit and what it could not, and why.

pip-audit looks each pinned release up in PyPI's vulnerability feed (the ``vulnerabilities`` of
``https://pypi.org/pypi/NAME/VERSION/json``). Where that feed is out of reach while the package
index is not (a mirror or proxy that serves the index alone), it answers "not found" for every
release, which is no finding and no pass: the audit then says that nothing could be audited
here and why, and fails only on a vulnerability actually reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NOT_FOUND = "Dependency not found on PyPI"
# a release surely on PyPI: when even it is "not found", the feed is out of reach
CANARY = "pip-audit"
FEED_OUT_OF_REACH = (
    "PyPI's vulnerability feed (https://pypi.org/pypi/NAME/VERSION/json) is out of reach from "
    f"this machine: it answered 'not found' even for {CANARY}'s own release, which is on PyPI"
)
UNREACHABLE = ("ConnectionError", "Could not connect", "Max retries", "NameResolution")


def run_audit(requirements: Path) -> dict:
    """Run pip-audit on ``requirements`` (pinned, every dependency listed) and summarise it."""
    command = [sys.executable, "-m", "pip_audit", "--disable-pip", "--no-deps"]
    command += ["-r", str(requirements), "--progress-spinner", "off", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True)
    summary = summarise(done.returncode, done.stdout, done.stderr)
    return {"command": "pip-audit " + " ".join(command[3:]), **summary}


def summarise(exit_code: int, stdout: str, stderr: str) -> dict:
    """What pip-audit's JSON report says: the packages audited, those found vulnerable (with
    the advisories' ids), those not audited by reason, and ``passed``: False on a finding or on
    a failure of pip-audit itself, None when nothing could be audited here, else True."""
    try:
        dependencies = json.loads(stdout)["dependencies"]
    except (ValueError, KeyError, TypeError):
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        reachable = not any(word in stderr for word in UNREACHABLE)
        return {
            "exit": exit_code,
            "audited": 0,
            "vulnerable": {},
            "not_audited": {f"pip-audit stopped: {last}": ["all"]},
            "passed": False if reachable else None,
        }
    skipped = {d["name"]: d["skip_reason"] for d in dependencies if "skip_reason" in d}
    feed_out_of_reach = NOT_FOUND in skipped.get(CANARY, "")
    not_audited: dict[str, list[str]] = {}
    for name, reason in sorted(skipped.items()):
        why = FEED_OUT_OF_REACH if feed_out_of_reach and NOT_FOUND in reason else reason
        not_audited.setdefault(why, []).append(name)
    vulnerable = {d["name"]: [v["id"] for v in d["vulns"]] for d in dependencies if d.get("vulns")}
    audited = len(dependencies) - len(skipped)
    return {
        "exit": exit_code,
        "audited": audited,
        "vulnerable": vulnerable,
        "not_audited": not_audited,
        "passed": False if vulnerable else True if audited else None,
    }
