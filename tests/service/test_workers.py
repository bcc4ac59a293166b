"""``python -m service`` with several worker processes (service/workers.py): one port, the
workers' metrics summed, a dead worker replaced, readiness for all of them, keep-alive
connections spread over the workers, a model loaded or unloaded through one worker swapped by
every worker, and a checkpoint changed on disk reloaded by every worker when they watch."""

import contextlib
import os
import re
import signal
import socket
import time
from pathlib import Path

import httpx
import numpy as np

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


def _restarts(url: str) -> float:
    lines = httpx.get(f"{url}/metrics", timeout=30).text.splitlines()
    (line,) = [line for line in lines if line.startswith("unconv_worker_restarts_total ")]
    return float(line.split()[-1])


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
        assert _restarts(url) == 0
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
        assert _restarts(url) == 1
        assert server.poll() is None


def _connections(pid: int, port: int) -> set[int]:
    """The client ports of the established connections to ``port`` that ``pid`` holds (from
    /proc: the sockets among its descriptors)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            if match := re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd)):
                inodes.add(match.group(1))
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        local, remote, state, inode = (fields := line.split())[1], fields[2], fields[3], fields[9]
        if int(local.rsplit(":", 1)[1], 16) == port and state == "01" and inode in inodes:
            ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


def _answered_connection(port: int) -> socket.socket:
    """A new keep-alive connection, once a worker has answered a request on it."""
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    assert client.recv(65536).startswith(b"HTTP/1.1 200")
    return client


def test_keep_alive_connections_are_spread_over_the_workers(checkpoint_dir, tmp_path):
    """Four keep-alive connections opened one after another, two held by each worker; once
    both of one worker's close, the next two go to that worker."""
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    with running_service(checkpoints, tmp_path / "server.log", UNCONV_WORKERS="2") as (
        server,
        url,
    ):
        port = int(url.rsplit(":", 1)[1])
        first, second = sorted(child_processes(server.pid))
        clients = []
        try:
            for _ in range(4):
                clients.append(_answered_connection(port))
            held = _connections(first, port)
            assert (len(held), len(_connections(second, port))) == (2, 2)
            for client in clients:
                if client.getsockname()[1] in held:
                    client.close()
            deadline = time.monotonic() + 30
            while _connections(first, port):
                assert time.monotonic() < deadline, "the closed connections stay open"
                time.sleep(0.05)
            time.sleep(0.2)  # and its loop has written its count down
            new = [_answered_connection(port) for _ in range(2)]
            clients += new
            assert _connections(first, port) == {client.getsockname()[1] for client in new}
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
