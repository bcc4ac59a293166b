"""The audit's account of pip-audit's JSON report (bench/serving/audit.py): a finding fails it,
a feed out of reach is said to be so and fails nothing, what was not audited is named."""

import json

from bench.serving.audit import FEED_OUT_OF_REACH, summarise


def _not_found(name: str, version: str) -> dict:
    reason = f"Dependency not found on PyPI and could not be audited: {name} ({version})"
    return {"name": name, "skip_reason": reason}


def _audited(name: str, *ids: str) -> dict:
    vulns = [{"id": i, "fix_versions": ["9.9"], "aliases": [], "description": ""} for i in ids]
    return {"name": name, "version": "1.0", "vulns": vulns}


def _report(*dependencies: dict) -> str:
    return json.dumps({"dependencies": list(dependencies), "fixes": []})


def test_a_feed_out_of_reach_audits_nothing_and_says_why():
    report = _report(_not_found("pip-audit", "2.10.1"), _not_found("torch", "2.14.1"))
    summary = summarise(0, report, "No known vulnerabilities found")
    assert summary["passed"] is None and summary["audited"] == 0
    assert summary["not_audited"] == {FEED_OUT_OF_REACH: ["pip-audit", "torch"]}


def test_a_known_vulnerability_fails_the_audit():
    report = _report(_audited("pip-audit"), _audited("jinja2", "GHSA-xxxx", "PYSEC-1"))
    summary = summarise(1, report, "")
    assert summary["passed"] is False
    assert summary["vulnerable"] == {"jinja2": ["GHSA-xxxx", "PYSEC-1"]}


def test_a_package_missing_from_a_reachable_feed_keeps_pip_audits_reason():
    local = _not_found("unconv-local", "0.1.0")
    summary = summarise(0, _report(_audited("pip-audit"), _audited("torch"), local), "")
    assert summary["passed"] is True and summary["audited"] == 2
    assert summary["not_audited"] == {local["skip_reason"]: ["unconv-local"]}


def test_pip_audit_stopping_fails_unless_it_could_not_connect():
    unreachable = "pip_audit._service.interface.ConnectionError: Could not connect to PyPI"
    assert summarise(1, "", unreachable)["passed"] is None
    broken = "ValueError: requirements/dev.txt: no such file"
    summary = summarise(1, "", broken)
    assert summary["passed"] is False and f"pip-audit stopped: {broken}" in summary["not_audited"]
