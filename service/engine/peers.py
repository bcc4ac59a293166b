"""The other worker processes serving the same port, as one of them sees them.

``python -m service`` may run several workers (``service/workers.py``); each app is given a
``Peers`` (``create_app(..., peers=...)``) and its engine reports to it. The default is a
single process: no other worker, nothing shared, ready when its own models are.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from dataclasses import dataclass
from pathlib import Path

from .generations import Generations


@dataclass
class Peers:
    """What a server process shares with the other workers of its port.

    Parameters
    ----------
    generations : Generations, optional
        The models' loads and unloads every worker follows; None for a single process.
    metrics_dir : Path, optional
        Where every worker writes its metrics for prometheus_client's multiprocess mode
        (``PROMETHEUS_MULTIPROC_DIR``), summed by whichever answers /metrics; None for one.
    ready : sequence of int, optional
        A flag per worker in shared memory, 1 once that worker is ready; None for one process.
    slot : int
        This worker's index in ``ready``, set in each worker after the fork.
    """

    generations: Generations | None = None
    metrics_dir: Path | None = None
    ready: MutableSequence[int] | None = None
    slot: int = 0

    def mark_ready(self) -> None:
        """Count this process as ready: its models are loaded (or failed to load)."""
        if self.ready is not None:
            self.ready[self.slot] = 1

    def all_ready(self) -> bool:
        """Whether every worker has loaded its models; always true for a single process."""
        return self.ready is None or all(self.ready)
