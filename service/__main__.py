"""``python -m service``: serve the API with uvicorn on UNCONV_HOST:UNCONV_PORT, on one
process per core on the CPU and four on a GPU (``service/workers.py``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import uvicorn

from .logs import configure_logging
from .runtime import available_cores, tune_server_process
from .settings import load_settings
from .workers import serve

if TYPE_CHECKING:
    from .engine.peers import Peers


def main() -> None:
    tune_server_process()  # before anything imports torch
    # the supervisor asks NVML whether there is a GPU: the CUDA runtime's own answer starts
    # the driver, and workers forked after that cannot use CUDA
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    workers = settings.worker_processes()

    def configure(peers: Peers) -> uvicorn.Config:
        # imported only now: the metrics pick their storage (one process or several) as
        # prometheus_client is imported, once ``serve`` has chosen
        from .api import create_app

        # built once, before the fork; each worker divides its share of the cores
        cores = max(1, available_cores() // workers)
        app = create_app(settings.for_cores(cores), cores=cores, peers=peers)
        return uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            # let accepted requests finish after SIGTERM before the lifespan drains the batchers
            timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
            # one handler for every line, uvicorn's too; the app writes the access log
            log_config=None,
            access_log=False,
        )

    raise SystemExit(serve(configure, workers))


if __name__ == "__main__":
    main()
