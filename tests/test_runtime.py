"""Process-wide tuning (service/runtime.py)."""

import os
import subprocess
import sys

from service.runtime import keep_freed_memory, limit_openmp_spinning


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


def test_keeping_freed_memory_leaves_tensors_intact():
    import torch

    keep_freed_memory()
    for _ in range(3):  # large blocks freed and reused from the heap
        x = torch.full((64, 64, 28, 28), 2.0)
        assert float((x * x).sum()) == 4.0 * x.numel()
        del x
