"""``python -m service`` with several worker processes (service/workers.py): one port, the
workers' metrics summed, a dead worker replaced, readiness for all of them, a model loaded
or unloaded through one worker swapped by every worker, and a checkpoint changed on disk
reloaded by every worker when they watch."""

import os
import signal
import time

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
