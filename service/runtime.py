"""Process-wide settings for a server that runs forward passes back to back on the CPU.

Each is measured in docs/performance.md; each leaves an explicit setting of the user alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h


def limit_openmp_spinning() -> None:
    """PyTorch's OpenMP threads (libgomp) spin for 300,000 rounds after each parallel region
    before they sleep, which on a busy server takes the cores the event loop and the codec
    need between forward passes; 20,000 rounds still bridge the gaps between the ops of one
    forward pass. Takes effect only before torch is imported."""
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")


def keep_freed_memory() -> None:
    """Serve large tensors from the heap instead of fresh ``mmap`` pages.

    glibc hands out blocks over its (adaptive) mmap threshold as new mappings and unmaps them
    on free, so every activation of a large batch page-faults its memory in again: the AE's
    forward pass on 64 digits took 30 or 85 ms by the luck of the threshold. The heap then
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

    A loaded service holds some 370,000 objects that live as long as the process, and each
    full collection walked all of them while holding the GIL: a fifth of a millisecond of the
    event loop per request, and pauses of tens of milliseconds. Freed objects are still freed
    by reference counting; ``unfreeze_objects`` undoes this when the service stops.
    """
    gc.collect()
    gc.freeze()


def unfreeze_objects() -> None:
    gc.unfreeze()
