"""The loads and unloads of Triton's model-repository extension, shared by the worker processes
of ``python -m service``, so that every worker swaps, not only the one a call reached.

The supervisor makes one ``Generations`` before forking. A worker that loads or unloads a model
publishes it: under a file lock, the table ``{name: [generation, action]}`` is rewritten
atomically, then the shared revision (one integer in shared memory) is set to the new
generation. A worker reads that integer before serving a request (nothing more while it is
unchanged); when it has moved, it reads the table and does what it has not done yet
(``Engine.follow``).
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
from pathlib import Path
from typing import Literal

from ..models import write_atomically

Action = Literal["load", "unload"]


class Generations:
    """The shared table of the workers' loads and unloads.

    Parameters
    ----------
    directory : Path
        A directory private to this service (the supervisor's temporary one), for the table
        and its lock file.
    """

    def __init__(self, directory: Path):
        self.table_path = Path(directory) / "repository.json"
        self.lock_path = Path(directory) / "repository.lock"
        # the last generation published; read without a lock, written under the file lock
        self._revision = multiprocessing.RawValue("q", 0)

    def revision(self) -> int:
        """The last generation published by any worker (0: none yet). One shared-memory read."""
        return self._revision.value

    def table(self) -> dict[str, tuple[int, Action]]:
        """Each model's last load or unload: ``{name: (generation, action)}``."""
        try:
            document = json.loads(self.table_path.read_text())
        except FileNotFoundError:
            return {}
        return {name: (int(gen), action) for name, (gen, action) in document.items()}

    def publish(self, name: str, action: Action) -> int:
        """Record that this worker has just loaded or unloaded ``name``; its generation."""
        # a file lock, not a multiprocessing.Lock: the kernel releases it if its worker dies
        with self.lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            table = self.table()
            generation = self._revision.value + 1
            table[name] = (generation, action)
            document = json.dumps({n: list(entry) for n, entry in table.items()})
            write_atomically(self.table_path, lambda tmp: tmp.write_text(document))
            # after the table: a worker that sees this revision finds its entry in the table
            self._revision.value = generation
        return generation
