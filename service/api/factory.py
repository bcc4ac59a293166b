"""The app factory: the routes, the page and the docs over an engine built in the lifespan."""

from __future__ import annotations

from contextlib import asynccontextmanager

import torch
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from .. import __version__, tracing
from ..engine import Engine
from ..engine.metrics import Metrics
from ..engine.peers import Peers
from ..runtime import available_cores
from ..settings import Settings
from .atlas import atlas_router
from .contract import install_openapi
from .dispatch import ModelRoutes, require_api_key
from .errors import install_error_handlers
from .middleware import BodyLimitMiddleware, FollowWorkersMiddleware, MetricsMiddleware
from .observe import ObservedFastAPI
from .routes import health, model_routes, router
from .v2 import router as v2_router
from .v2 import server as v2_server
from .v2_repository import router as v2_repository
from .web import UNCOUNTED_ROUTES, install_web


def create_app(settings: Settings, cores: int | None = None, peers: Peers | None = None) -> FastAPI:
    """
    Build the app; its models load in its lifespan, never here. It changes nothing in the
    process: the entry points (``python -m service``, ``service.api:app``) tune it.

    Parameters
    ----------
    settings : Settings
        The service's settings (``load_settings()`` reads them from the environment).
    cores : int, optional
        This process's share of the cores, for forward passes and codec threads; by default
        every core it may use (one process).
    peers : Peers, optional
        The other worker processes of the port (``service/workers.py``); by default none.
    """
    peers = peers or Peers()
    metrics = Metrics(peers.metrics_dir)
    cores = cores or available_cores()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        tracing.start()  # in each worker: when OTEL_* variables ask for traces
        app.state.engine = Engine(settings, metrics, cores, peers)
        torch.set_num_threads(app.state.engine.threads.threads)
        app.state.engine.start()
        try:
            yield
        finally:
            await app.state.engine.close()
            tracing.stop()

    app = ObservedFastAPI(
        title="unconv",
        version=__version__,
        summary="Deconvnet visualisations, auto-encoder reconstructions and VAE samples",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,  # served offline by install_web
        redoc_url=None,
        # the observer's spans (observe.py) are the request's; FastAPI's own would repeat them
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    install_openapi(app)
    # the key check is there only when a key is set, so that the docs show a key only when one
    # is needed; the model routes are declared here and served by ModelRoutes (dispatch.py)
    keyed = [Depends(require_api_key)] if settings.api_key is not None else []
    app.include_router(model_routes.router, dependencies=keyed)
    app.include_router(router, dependencies=keyed)
    app.include_router(atlas_router, dependencies=keyed)
    app.include_router(v2_router, dependencies=keyed)
    app.include_router(v2_repository, dependencies=keyed)
    app.include_router(health)
    app.include_router(v2_server)
    install_web(app)
    _install_middleware(app, settings, metrics, peers)
    return app


def _install_middleware(app: FastAPI, settings: Settings, metrics: Metrics, peers: Peers) -> None:
    # the last added runs first: CORS, then metrics (which count what the rest answer), the
    # body limit, following the other workers, and the model routes (dispatch.py)
    app.add_middleware(ModelRoutes, table=model_routes, api_key=settings.api_key)
    if peers.generations is not None:  # several workers: each swaps what another loaded
        probes = {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"}
        app.add_middleware(FollowWorkersMiddleware, unhindered=frozenset(probes))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, uncounted=UNCOUNTED_ROUTES)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Seed", "Retry-After"],
        )
