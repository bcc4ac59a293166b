"""deploy/prometheus/ for real, judged by Debian's Prometheus: ``promtool`` checks the scrape
configuration and the alert rules and runs the rules' unit tests; a Prometheus server scrapes
``python -m service`` with two workers under a short load, and its sums equal what the load
sent; and every query of the Grafana dashboard answers there. Skipped without Debian's
``prometheus`` package, unless ``UNCONV_REQUIRE_PROMETHEUS=1`` (set by ``.ci/run``, which
installs it) makes them fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from devkit.server import wait_ready
from tests.helpers import png_bytes
from tests.servers import (
    ROOT,
    child_processes,
    free_port,
    running_service,
    served_checkpoints,
    stopped,
)

DEPLOY = ROOT / "deploy" / "prometheus"
DASHBOARD = DEPLOY / "grafana-dashboard.json"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("UNCONV_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"{name} is missing; UNCONV_REQUIRE_PROMETHEUS=1 needs it (.ci/run)")
        pytest.skip(f"{name} is missing: apt-get install prometheus")
    return path


def _promtool(*args: str) -> str:
    result = subprocess.run(
        [_tool("promtool"), *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_accepts_the_configuration_and_the_rules():
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 5 rules found" in _promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in _promtool("test", "rules", "alerts.test.yml")


def test_every_alert_has_unit_tests_that_fire_it_and_keep_it_quiet():
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((DEPLOY / "alerts.test.yml").read_text())
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts == fired == quiet
    operating = (ROOT / "docs" / "operating.md").read_text()
    assert all(f"| `{alert}`" in operating for alert in alerts)  # its table lists each


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _scrape_config(target: str, directory: Path) -> Path:
    """deploy/prometheus/prometheus.yml with ``target`` in place of its DNS discovery (no
    cluster here) and a scrape and evaluation each second."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [target]}]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def _prometheus(config: Path, directory: Path) -> Iterator[str]:
    port = free_port()
    log = directory / "prometheus.log"
    command = [
        _tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, "/-/ready", 60)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _query(prometheus: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]


def _by(prometheus: str, expr: str, *labels: str) -> dict[tuple, float]:
    return {
        tuple(s["metric"].get(label) for label in labels): float(s["value"][1])
        for s in _query(prometheus, expr)
    }


# what each request of the load asks: (route, request keywords, status expected)
_GENERATE = ("/generate", {"json": {"n": 2, "seed": 1, "format": "npy"}}, 200)
_RECONSTRUCT = ("/reconstruct", {"files": {"file": ("x.png", png_bytes())}}, 200)
_INVALID = ("/generate", {"json": {"n": 0}}, 422)
_LOAD = [_GENERATE] * 12 + [_RECONSTRUCT] * 6 + [_INVALID] * 3


def _send(url: str, request: tuple) -> tuple[str, float]:
    route, kwargs, status = request
    started = time.perf_counter()
    response = httpx.post(f"{url}{route}", timeout=30, **kwargs)  # a new connection each
    elapsed = time.perf_counter() - started
    assert response.status_code == status, response.text
    return route, elapsed


def _load(url: str, workers: list[int], prometheus: str) -> list[tuple[str, float]]:
    """The load once through each worker (the other one paused, so that it takes no
    connection), four requests at a time, with a scrape after each: every series then has two
    samples that differ, which ``rate`` needs (a series first scraped after the whole load has
    none, and a dashboard's ratio of rates is 0/0); (route, seconds the client waited) of each."""
    sent = []
    for idle in workers:
        with stopped(idle), ThreadPoolExecutor(4) as pool:
            sent += pool.map(lambda request: _send(url, request), _LOAD)
        _next_scrape(prometheus)
    return sent


def _next_scrape(prometheus: str) -> None:
    """Until Prometheus has scraped the service once more than when called."""
    seen = _by(prometheus, 'timestamp(up{job="unconv"})')
    deadline = time.monotonic() + 60
    while _by(prometheus, 'timestamp(up{job="unconv"})') in (seen, {}):
        assert time.monotonic() < deadline, "Prometheus stopped scraping"
        time.sleep(0.5)


def _wait_for_scrape(prometheus: str, expected: float) -> None:
    """Until Prometheus holds the whole load, and has scraped once more, so that each series
    has two samples at least: ``rate`` needs two."""
    query = 'sum(unconv_requests_total{job="unconv", route=~"/generate|/reconstruct"})'
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _by(prometheus, query) == {(): expected}:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"{query} is {_by(prometheus, query)}, the load sent {expected}")
    _next_scrape(prometheus)


def test_a_real_prometheus_sums_the_workers_to_what_the_load_sent(checkpoint_dir, tmp_path):
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    env = {"UNCONV_WORKERS": "2"}
    with running_service(checkpoints, tmp_path / "server.log", **env) as (server, url):
        config = _scrape_config(url.removeprefix("http://"), tmp_path)
        with _prometheus(config, tmp_path) as prometheus:
            sent = _load(url, sorted(child_processes(server.pid)), prometheus)
            _wait_for_scrape(prometheus, 2 * len(_LOAD))
            _check_counters(prometheus)
            _check_latency(prometheus, [s for route, s in sent if route == "/generate"])
            _check_dashboard_and_rules(prometheus)


def _check_counters(prometheus: str) -> None:
    answered = _by(
        prometheus, 'sum by (route, status) (unconv_requests_total{job="unconv"})', "route",
        "status",
    )  # fmt: skip
    expected = {("/generate", "200"): 24, ("/reconstruct", "200"): 12, ("/generate", "422"): 6}
    assert {key: answered.get(key) for key in expected} == expected, answered


def _check_latency(prometheus: str, seconds: list[float]) -> None:
    """The histogram of /generate holds every request; the server's time for each is within
    the client's, so each bucket holds at least the requests the client saw end within it."""
    selector = '{job="unconv", route="/generate"}'
    buckets = _by(prometheus, f"sum by (le) (unconv_request_seconds_bucket{selector})", "le")
    assert buckets[("+Inf",)] == len(seconds)
    for (le,), count in buckets.items():
        assert count >= sum(s <= float(le) for s in seconds), (le, count, sorted(seconds))
    (total,) = _by(prometheus, f"sum(unconv_request_seconds_sum{selector})").values()
    assert 0 < total <= sum(seconds)


def _check_dashboard_and_rules(prometheus: str) -> None:
    for expr in _dashboard_queries():
        assert _query(prometheus, expr), f"the dashboard's query answered nothing: {expr}"
    (error_share,) = _query(prometheus, _dashboard_queries()[1])
    assert float(error_share["value"][1]) == 0  # no 5xx in the load
    assert _by(prometheus, 'sum(unconv_ready{job="unconv"})') == {(): 1.0}
    assert _by(prometheus, 'sum(unconv_worker_restarts_total{job="unconv"})') == {(): 0.0}
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    evaluated = [rule for group in rules for rule in group["rules"]]
    assert len(evaluated) == 5
    assert all(rule["health"] == "ok" and rule["state"] == "inactive" for rule in evaluated), (
        evaluated
    )
