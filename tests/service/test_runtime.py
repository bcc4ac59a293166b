"""Process-wide tuning (service/runtime.py), observed in fresh processes where it is global."""

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

from service.runtime import (
    available_cores,
    freeze_loaded_objects,
    limit_openmp_spinning,
    unfreeze_objects,
)

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOMP_", "MALLOC_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=base | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_openmp_spinning_is_limited_unless_the_user_set_it(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    limit_openmp_spinning()
    assert os.environ["GOMP_SPINCOUNT"] == "20000"
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    limit_openmp_spinning()
    assert os.environ["GOMP_SPINCOUNT"] == "5"


# records GOMP_SPINCOUNT at the moment torch (which loads libgomp, which reads it) is imported,
# then starts an entry point: ``python -m service`` (its supervisor builds the app, and serves
# nothing here) or ``uvicorn service.api:app`` (which asks the module for ``app``)
_WATCH_TORCH_IMPORT = """
import os, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("GOMP_SPINCOUNT"))
sys.meta_path.insert(0, Watch())
if sys.argv[1] == "python -m service":
    import service.__main__ as entry
    def serve(configure, workers):
        from service.engine.peers import Peers
        configure(Peers())
        return 0
    entry.serve = serve
    try:
        entry.main()
    except SystemExit:
        pass
else:
    import service.api
    service.api.app
print(seen)
"""


def test_each_entry_point_limits_it_before_torch_is_imported(tmp_path):
    for entry in ("python -m service", "service.api:app"):
        code = _WATCH_TORCH_IMPORT.replace("sys.argv[1]", repr(entry))
        assert _python(code, UNCONV_CHECKPOINT_DIR=str(tmp_path)) == "['20000']", entry


# imports every module of the service and of training, with the process settings' functions
# replaced by recorders, and reports what changed in the environment and what was called
_IMPORT_EVERYTHING = """
import importlib, json, os, pkgutil, sys
before = dict(os.environ)
import service.runtime as runtime
called = []
for name in ("keep_freed_memory", "limit_openmp_spinning", "tune_server_process"):
    setattr(runtime, name, lambda name=name: called.append(name))
for package in ("service", "training"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        importlib.import_module(info.name)
after = dict(os.environ)
changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
print(json.dumps({"changed": changed, "called": called, "modules": len(sys.modules)}))
"""


def test_importing_the_service_or_training_changes_nothing_in_the_process():
    report = json.loads(_python(_IMPORT_EVERYTHING))
    assert report["modules"] > 100  # it did import them
    assert (report["changed"], report["called"]) == ([], [])


# an 8 MiB block: where it comes from (mmap or the heap), and whether the heap keeps it freed
_MALLOC_PROBE = """
import ctypes, ctypes.util, json
from service.runtime import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
keep_freed_memory()
before = libc.mallinfo2()
block = libc.malloc(8 << 20)
during = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
mmapped, heap_kept = during.hblkhd - before.hblkhd, after.arena - before.arena
print(json.dumps({"mmapped": mmapped, "heap_kept": heap_kept}))
"""


def test_large_blocks_stay_on_the_heap_unless_the_user_tuned_malloc():
    tuned = json.loads(_python(_MALLOC_PROBE))
    assert tuned["mmapped"] == 0 and tuned["heap_kept"] >= 8 << 20
    # the user's own threshold (64 KiB) is left in force: the block is mapped and unmapped
    users = json.loads(_python(_MALLOC_PROBE, MALLOC_MMAP_THRESHOLD_="65536"))
    assert users["mmapped"] >= 8 << 20 and users["heap_kept"] < 8 << 20


class _Node:
    pass


def _cycle() -> tuple[_Node, weakref.ref]:
    node = _Node()
    node.itself = node  # only the cycle collector can free it
    return node, weakref.ref(node)


def test_objects_alive_when_frozen_are_left_out_of_collections_until_unfrozen():
    old, old_ref = _cycle()
    try:
        freeze_loaded_objects()
        new, new_ref = _cycle()
        del old, new  # both are garbage now
        gc.collect()
        assert new_ref() is None  # later objects are collected as before
        assert old_ref() is not None  # the frozen one is not even looked at
    finally:
        unfreeze_objects()
    gc.collect()
    assert old_ref() is None and gc.get_freeze_count() == 0


async def test_the_service_freezes_once_ready_and_unfreezes_when_it_stops(make_client):
    _, app = await make_client()
    assert app.state.engine.ready and gc.get_freeze_count() > 0
    await app.state.engine.close()
    assert gc.get_freeze_count() == 0


def _cgroup(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_available_cores_follow_a_containers_cpu_quota(tmp_path):
    pinned = len(os.sched_getaffinity(0))
    cases = {
        "none": ({}, pinned),
        "v2 no limit": ({"cpu.max": "max 100000\n"}, pinned),
        "v2 half a core": ({"cpu.max": "50000 100000\n"}, 1),
        "v2 one and a half": ({"cpu.max": "150000 100000\n"}, min(pinned, 2)),
        "v2 more than pinned": ({"cpu.max": f"{(pinned + 8) * 100000} 100000\n"}, pinned),
        "v1 one core": ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1),
        "v1 no limit": ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, pinned),
        "unreadable": ({"cpu.max": "garbage"}, pinned),
    }
    for name, (files, expected) in cases.items():
        root = _cgroup(tmp_path / name.replace(" ", "-"), files)
        assert available_cores(root) == expected, name
