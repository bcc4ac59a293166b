"""Process-wide settings for a server that runs forward passes back to back on the CPU.

Only the entry points that serve call them (``tune_server_process``): importing the service
changes nothing in the process. Each is measured in docs/performance.md; each leaves an
explicit setting of the user alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import os
from pathlib import Path

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h


def tune_server_process() -> None:
    """The process settings of a server: called by its entry point, before torch is imported."""
    limit_openmp_spinning()
    keep_freed_memory()


def limit_openmp_spinning() -> None:
    """PyTorch's OpenMP threads (libgomp) spin for 300,000 rounds after each parallel region
    before they sleep, which on a busy server takes the cores the event loop and the codec
    need between forward passes; 20,000 rounds still bridge the gaps between the ops of one
    forward pass. Takes effect only before torch is imported."""
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")


def keep_freed_memory() -> None:
    """Serve large tensors from the heap instead of fresh ``mmap`` pages.

    glibc hands out blocks over its (adaptive) mmap threshold as new mappings and unmaps them
    on free, so every activation of a large batch page-faults its memory in again, and a
    forward pass's time depends on the luck of the threshold (docs/performance.md). The heap then
    keeps up to the largest batch's memory, which a server reuses anyway.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError, TypeError):
        pass  # not glibc (musl, macOS): nothing to tune


def freeze_loaded_objects() -> None:
    """Leave the objects alive now (modules, models, schemas) out of later garbage collections.

    A loaded service holds hundreds of thousands of objects that live as long as the process,
    and each full collection would walk all of them while holding the GIL: time taken from the
    event loop on every request, and long pauses (docs/performance.md). Freed objects are
    still freed by reference counting; ``unfreeze_objects`` undoes this when the service stops.
    """
    gc.collect()
    gc.freeze()


def unfreeze_objects() -> None:
    gc.unfreeze()


def available_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: those it is pinned to, or fewer under a container's CPU
    quota, which neither ``os.cpu_count()`` nor PyTorch's default thread count sees (a pod
    limited to 2 CPUs on a 64-core node would otherwise start 64 workers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = _cpu_quota(cgroup)
    return max(1, min(cores or 1, math.ceil(quota))) if quota else max(1, cores or 1)


def _cpu_quota(cgroup: Path) -> float | None:
    """CPUs' worth of time per period that the cgroup allows, or None without a limit."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1: a quota of -1 is no limit
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None
