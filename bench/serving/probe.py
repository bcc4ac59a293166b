"""``python -m bench.probe LOAD CONCURRENCY [NAME=VALUE ...]``: one load against a fresh service,
with the CPU each server thread spends per request, for finding where the time goes.

LOAD is a request of the benchmark (reconstruct_1, reconstruct_64, generate_64, visualise_5,
visualise_cnn; sent with wrk when installed);
NAME=VALUE pairs are environment variables for the service, e.g. UNCONV_CONCURRENT_BATCHES=1.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .scenarios import load, requests_to_send
from .server import prepare_models, service

MODELS = {"reconstruct_1": "ae", "reconstruct_64": "ae", "generate_64": "vae"}


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` by thread id; the main thread is the event loop."""
    tick = os.sysconf("SC_CLK_TCK")
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # the thread ended
        name = "event loop" if task.name == str(pid) else f"thread {task.name}"
        threads[name] = (int(fields[11]) + int(fields[12])) / tick
    return threads


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
    print("CPU ms per request, by thread:")
    for thread, cpu in sorted(spent.items(), key=lambda item: -item[1]):
        if cpu > 0:
            print(f"  {thread}: {cpu / max(row['requests'], 1) * 1000:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
