"""Readers of Linux's ``/proc``: processes' children, CPU time, threads, memory, descriptors."""

from __future__ import annotations

import os
import re
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: Path) -> list[str] | None:
    """The fields of a ``stat`` file after the command name (state, ppid, ...); None if gone."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None  # exited meanwhile


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _processes() -> dict[int, list[str]]:
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry / "stat")) is not None:
            stats[int(entry.name)] = fields
    return stats


def child_processes(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (the workers of ``python -m service``)."""
    return {child for child, fields in _processes().items() if fields[1] == str(pid)}


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents before their children."""
    return list(_tree(pid, _processes()))


def _tree(pid: int, stats: dict[int, list[str]]):
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)
    todo = [pid]
    while todo:
        current = todo.pop(0)
        yield current
        todo += children.get(current, [])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its descendants."""
    stats = _processes()
    return sum(_cpu(stats[p]) for p in _tree(pid, stats) if p in stats)


def threads_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` by thread id; the main thread's id is ``pid``."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (fields := _stat(task / "stat")) is not None:
            threads[int(task.name)] = _cpu(fields)
    return threads


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    current = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    return current, peak


def open_files(pid: int) -> int:
    """How many file descriptors a process holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return (sum(values) - idle) / _TICK, sum(values) / _TICK
