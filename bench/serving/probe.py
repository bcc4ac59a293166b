"""``python -m bench.serving.probe LOAD CONCURRENCY [NAME=VALUE ...]``: one load against a fresh
service, with the CPU its processes spend per request by role (supervisor, the workers' event
loops, their other threads), for finding where the time goes.

LOAD is a request of the benchmark (reconstruct_1, reconstruct_64, generate_64, visualise_5,
visualise_cnn; sent with wrk when installed);
NAME=VALUE pairs are environment variables for the service, e.g. UNCONV_CONCURRENT_BATCHES=1.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from devkit.proc import child_processes, threads_cpu_seconds

from .scenarios import load, requests_to_send
from .server import prepare_models, service


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of the service ``pid`` by role: its supervisor, and summed over its worker
    processes (``python -m service`` forks them) their event loops (each worker's main thread)
    and their other threads (inference, codecs, torch's)."""
    roles = {"supervisor": 0.0, "event loops": 0.0, "other threads": 0.0}
    for worker in [pid, *child_processes(pid)]:
        for thread, seconds in threads_cpu_seconds(worker).items():
            if worker == pid:
                role = "supervisor"
            else:
                role = "event loops" if thread == worker else "other threads"
            roles[role] += seconds
    return roles


def main(argv: list[str]) -> None:
    name, concurrency, *settings = argv
    request = requests_to_send()[name]
    env = prepare_models(Path(tempfile.mkdtemp())) | dict(s.split("=", 1) for s in settings)
    with service(env) as (url, process, _):
        load(url, request, int(concurrency), 2, process.pid)  # warm-up
        before = thread_cpu_seconds(process.pid)
        row = load(url, request, int(concurrency), 5, process.pid, warmup_s=0)
        after = thread_cpu_seconds(process.pid)
    print(row)
    spent = {t: cpu - before.get(t, 0.0) for t, cpu in after.items()}
    print("CPU ms per request, by role:")
    for role, cpu in spent.items():
        if cpu > 0:
            print(f"  {role}: {cpu / max(row['requests'], 1) * 1000:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
