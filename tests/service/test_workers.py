"""``python -m service`` with several worker processes (service/workers.py): one port, the
workers' metrics summed, a dead worker replaced, and readiness for all of them."""

import os
import signal
import time

import httpx

from tests.helpers import png_bytes
from tests.servers import child_processes, running_service, served_checkpoints, stopped


def _reconstruct(url: str, count: int) -> None:
    for _ in range(count):  # a new connection each: any worker may take it
        r = httpx.post(f"{url}/reconstruct", files={"file": ("x.png", png_bytes())}, timeout=30)
        assert r.status_code == 200, r.text


ANSWERED = 'unconv_requests_total{method="POST",route="/reconstruct",status="200"}'


def _answered(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(ANSWERED):
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_every_workers_requests(checkpoint_dir, tmp_path):
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    log = tmp_path / "server.log"
    with running_service(checkpoints, log, UNCONV_WORKERS="2") as (server, url):
        first, second = sorted(child_processes(server.pid))
        # a stopped worker takes no connection, so each of these goes to the other one
        with stopped(first):
            _reconstruct(url, 3)
        with stopped(second):
            _reconstruct(url, 5)
            # asked of the first worker, which answered five of them
            assert _answered(url) == 8


def test_a_worker_that_dies_is_replaced_and_its_counts_kept(checkpoint_dir, tmp_path):
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    with running_service(checkpoints, tmp_path / "server.log", UNCONV_WORKERS="2") as (
        server,
        url,
    ):
        _reconstruct(url, 4)
        before = child_processes(server.pid)
        os.kill(min(before), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = child_processes(server.pid)
            if len(now) == 2 and now != before and httpx.get(f"{url}/readyz").status_code == 200:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no new worker ready; children {before} -> {now}")
        _reconstruct(url, 2)
        assert _answered(url) == 6  # the dead worker's requests still count
        assert server.poll() is None
