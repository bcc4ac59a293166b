"""``python -m service`` with several worker processes (service/workers.py): one port, the
workers' metrics summed, a dead worker replaced, readiness for all of them, keep-alive
connections spread evenly, a model loaded or unloaded through one worker swapped by every
worker, and a checkpoint changed on disk reloaded by every worker when they watch."""

import multiprocessing
import os
import re
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from service import workers
from tests.helpers import png_bytes
from tests.servers import child_processes, running_service, served_checkpoints, stopped
from tests.service.api.test_v2_repository import REQUEST, _expected, _retrain


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


@pytest.mark.parametrize(
    ("counts", "slot", "surplus"),
    [([4, 0], 0, True), ([2, 2], 0, False), ([3, 2], 0, False), ([3, 1], 0, True),
     ([1, 3], 0, False), ([2, 1, 0], 0, True), ([1, 1, 0], 1, False), ([0, 0], 1, False)],
)  # fmt: skip
def test_a_worker_has_surplus_connections_above_an_even_share(monkeypatch, counts, slot, surplus):
    # the share is the total divided evenly, rounded up: 4 over 2 -> 2, 5 -> 3, 3 over 3 -> 1
    shared = multiprocessing.RawArray("i", counts)
    state = SimpleNamespace(connections=set(range(counts[slot])))
    monkeypatch.setattr(workers, "_connections", shared)
    monkeypatch.setattr(workers, "_server_state", state)
    monkeypatch.setattr(workers, "_slot", slot)
    assert workers.surplus_connection() is surplus
    assert shared[slot] == counts[slot]  # this worker's count, written for the others


def _established(pid: int, port: int) -> int:
    """Established TCP connections to ``port`` whose socket ``pid`` holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(match.group(1))
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def test_keep_alive_connections_end_up_spread_over_the_workers(checkpoint_dir, tmp_path):
    """Keep-alive connections that reach one worker (the other stopped meanwhile) are closed
    after an answer while that worker holds more than its share, until each of two workers
    holds two of four."""
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    with running_service(checkpoints, tmp_path / "server.log", UNCONV_WORKERS="2") as (
        server,
        url,
    ):
        first, second = sorted(child_processes(server.pid))
        port = int(url.rsplit(":", 1)[1])
        limits = httpx.Limits(max_connections=1)
        clients = [httpx.Client(base_url=url, limits=limits, timeout=30) for _ in range(4)]
        closed = []
        try:
            with stopped(second):  # every connection reaches the first, which closes some
                for client in clients:
                    closed.append(client.get("/healthz").headers.get("connection"))
                assert "close" in closed and _established(second, port) == 0
            for _ in range(30):
                for client in clients:
                    closed.append(client.get("/healthz").headers.get("connection"))
            assert (_established(first, port), _established(second, port)) == (2, 2)
            assert closed[-4:] == [None] * 4  # and none closes once they are even
        finally:
            for client in clients:
                client.close()


def _ae_answer(url: str) -> np.ndarray:
    """/v2/models/ae/infer on a new connection: any worker not stopped may take it."""
    r = httpx.post(f"{url}/v2/models/ae/infer", json=REQUEST, timeout=60)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def test_every_worker_swaps_what_one_loaded_or_unloaded(checkpoint_dir, tmp_path):
    """Two workers, each having served the old ae; a retrained ae is loaded through whichever
    worker takes the call; then each worker in turn (the other stopped) answers with the new
    weights (plain torch on the new checkpoint), and sees the unload too."""
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    env = {"UNCONV_WORKERS": "2", "UNCONV_MODEL_CONTROL": "explicit"}
    with running_service(checkpoints, tmp_path / "server.log", **env) as (server, url):
        workers = sorted(child_processes(server.pid))
        old = _expected(checkpoints)
        for worker in workers:
            with stopped(next(w for w in workers if w != worker)):
                np.testing.assert_allclose(_ae_answer(url), old, atol=1e-5)
        _retrain(checkpoints, seed=11)
        new = _expected(checkpoints)
        assert np.abs(new - old).max() > 1e-2
        r = httpx.post(f"{url}/v2/repository/models/ae/load", timeout=60)
        assert r.status_code == 200, r.text
        for worker in workers:
            with stopped(next(w for w in workers if w != worker)):
                np.testing.assert_allclose(_ae_answer(url), new, atol=1e-5)
        r = httpx.post(f"{url}/v2/repository/models/ae/unload", timeout=60)
        assert r.status_code == 200, r.text
        for worker in workers:
            with stopped(next(w for w in workers if w != worker)):
                r = httpx.post(f"{url}/v2/models/ae/infer", json=REQUEST, timeout=60)
                assert (r.status_code, r.json()["code"]) == (404, "model_not_loaded"), r.text
                index = httpx.post(f"{url}/v2/repository/index", timeout=60).json()
                assert {m["name"]: m["state"] for m in index}["ae"] == "UNAVAILABLE"
                vae = httpx.post(
                    f"{url}/reconstruct",
                    files={"file": ("x.png", png_bytes())},
                    data={"model": "vae"},
                    timeout=30,
                )
                assert vae.status_code == 200, vae.text  # the other models keep serving
        assert server.poll() is None


def test_every_worker_watches_the_checkpoints(checkpoint_dir, tmp_path):
    """UNCONV_WATCH_CHECKPOINTS=1 with two workers: a retrained ae on disk, and no call; each
    worker in turn (the other stopped) comes to answer with the new weights by itself."""
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    env = {"UNCONV_WORKERS": "2", "UNCONV_WATCH_CHECKPOINTS": "1"}
    with running_service(checkpoints, tmp_path / "server.log", **env) as (server, url):
        workers = sorted(child_processes(server.pid))
        old = _expected(checkpoints)
        _retrain(checkpoints, seed=11)
        new = _expected(checkpoints)
        assert np.abs(new - old).max() > 1e-2
        for worker in workers:
            with stopped(next(w for w in workers if w != worker)):
                deadline = time.monotonic() + 30
                while not np.allclose(answer := _ae_answer(url), new, atol=1e-5):
                    assert time.monotonic() < deadline, "still the old weights after 30 s"
                    np.testing.assert_allclose(answer, old, atol=1e-5)  # old or new, nothing else
                    time.sleep(0.2)
        assert server.poll() is None
