"""``python -m service``: serve the API with uvicorn on UNCONV_HOST:UNCONV_PORT, on one
process per core on the CPU and four on a GPU (``service/workers.py``)."""

from __future__ import annotations

import logging
import os

import uvicorn

from .settings import load_settings
from .workers import serve


def main() -> None:
    # the supervisor asks NVML whether there is a GPU: the CUDA runtime's own answer starts
    # the driver, and workers forked after that cannot use CUDA
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    workers = settings.worker_processes()
    # the app's own settings (read as it is imported) give each worker its share of the cores
    os.environ["UNCONV_WORKERS"] = str(workers)
    config = uvicorn.Config(
        "service.api:app",
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # let accepted requests finish after SIGTERM before the lifespan drains the batchers
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
        access_log=False,
    )
    raise SystemExit(serve(config, workers))


if __name__ == "__main__":
    main()
