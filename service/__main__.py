"""``python -m service``: serve the API with uvicorn on UNCONV_HOST:UNCONV_PORT."""

from __future__ import annotations

import logging

import uvicorn

from .settings import load_settings


def main() -> None:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "service.api:app",
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # let accepted requests finish after SIGTERM before the lifespan drains the batchers
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
        access_log=False,
    )


if __name__ == "__main__":
    main()
