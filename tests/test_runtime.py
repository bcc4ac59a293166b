"""Process-wide tuning (service/runtime.py)."""

import gc
import os
import subprocess
import sys

from service import runtime
from service.runtime import (
    freeze_loaded_objects,
    keep_freed_memory,
    limit_openmp_spinning,
    unfreeze_objects,
)


def test_openmp_spinning_is_limited_unless_the_user_set_it(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    limit_openmp_spinning()
    assert os.environ["GOMP_SPINCOUNT"] == "20000"
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    limit_openmp_spinning()
    assert os.environ["GOMP_SPINCOUNT"] == "5"


def test_the_service_sets_it_before_torch_loads_openmp():
    code = "import service, torch, os; print(os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "20000", out.stderr


class _FakeLibc:
    def __init__(self, name):
        self.calls = _FakeLibc.calls

    def mallopt(self, parameter, value):
        self.calls.append((parameter, value))
        return 1


def test_large_blocks_stay_on_the_heap_unless_the_user_tuned_malloc(monkeypatch):
    monkeypatch.setattr(runtime.ctypes, "CDLL", _FakeLibc)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    _FakeLibc.calls = []
    keep_freed_memory()
    assert _FakeLibc.calls == [(-3, 32 << 20), (-1, 256 << 20)]  # M_MMAP_, M_TRIM_THRESHOLD
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    _FakeLibc.calls = []
    keep_freed_memory()
    assert _FakeLibc.calls == []


def test_a_libc_without_mallopt_is_left_alone(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: object())
    keep_freed_memory()  # no AttributeError


def test_freezing_leaves_the_objects_alive_now_out_of_collections():
    try:
        freeze_loaded_objects()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # at least the modules imported so far
        garbage = [[] for _ in range(100)]
        assert gc.get_freeze_count() == frozen  # later objects are collected as before
        del garbage
    finally:
        unfreeze_objects()
    assert gc.get_freeze_count() == 0


async def test_the_service_freezes_once_ready_and_unfreezes_when_it_stops(make_client):
    _, app = await make_client()
    assert app.state.service.ready and gc.get_freeze_count() > 0
    await app.state.service.close()
    assert gc.get_freeze_count() == 0
