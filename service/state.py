"""What the app holds while it runs: models, their batchers, and readiness."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from starlette.requests import Request

from . import workers
from .batcher import Batcher, DeadlineExceeded, QueueFull, ShuttingDown
from .errors import ServiceError, shutting_down
from .inference import CodecPool, ThreadShare, make_predict, single_threaded
from .metrics import Metrics
from .models import exact_convolutions, resolve_device
from .registry import ModelState, ServedModel, discover, load
from .runtime import freeze_loaded_objects, unfreeze_objects
from .settings import Settings

log = logging.getLogger("unconv")


def _forward_threads(settings: Settings) -> int:
    """CPU threads for forward passes: UNCONV_TORCH_THREADS, else this worker's share of the
    cores (PyTorch's own default counts the physical cores, whatever a container allows)."""
    share = min(torch.get_num_threads(), settings.cores_per_worker())
    return settings.torch_threads or max(1, share)


class ServiceState:
    """Models and batchers of one running app. Models load in the background after start-up;
    until then /readyz answers 503."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.device = resolve_device(settings.device)
        if self.device.type == "cuda":
            exact_convolutions()
        # a thread per batch that may run at once: while one batch runs its forward pass,
        # the next decodes its images, and the CPU threads are shared between the passes
        self.executor = ThreadPoolExecutor(
            max_workers=settings.concurrent_batches,
            thread_name_prefix="unconv-inference",
            initializer=single_threaded,
        )
        self.codec = CodecPool(settings.codec_threads or min(4, settings.cores_per_worker()))
        self.threads = ThreadShare(_forward_threads(settings))
        self.models: dict[str, ServedModel] = discover(settings)
        self.batchers: dict[str, Batcher] = {}
        self.ready = False
        self.closing = False
        self._loader: asyncio.Task | None = None

    def start(self) -> None:
        self._loader = asyncio.create_task(self._load_all(), name="load-models")

    async def _load_all(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        for model in self.models.values():
            await loop.run_in_executor(self.executor, load, model, s, self.device)
            if model.available:
                self.batchers[model.name] = Batcher(
                    make_predict(model, self.device, s.max_image_pixels, self.codec, self.threads),
                    max_batch_size=s.max_batch_size,
                    max_delay_s=s.max_delay_ms / 1000,
                    max_queue=s.max_queue,
                    executor=self.executor,
                    concurrency=s.concurrent_batches,
                    observer=self.metrics.observer(model.name),
                )
                self.batchers[model.name].start()
        freeze_loaded_objects()
        self.ready = True
        workers.mark_ready()
        loaded = sum(m.available for m in self.models.values())
        log.info("ready on %s: %d of %d models loaded", self.device, loaded, len(self.models))

    async def wait_ready(self) -> None:
        if self._loader is not None:
            await asyncio.shield(self._loader)

    def model(self, name: str, endpoint: str) -> ServedModel:
        """The loaded model ``name`` for ``endpoint``, or the error that explains why not."""
        if self.closing:
            raise shutting_down()
        model = self.models.get(name)
        accepted = sorted(n for n, m in self.models.items() if endpoint in m.endpoints)
        if model is None:
            raise ServiceError(
                404,
                "unknown_model",
                f"no model {name!r}; /{endpoint} accepts "
                f"{accepted} (GET /models lists every model)",
            )
        if model.kind != "unknown" and endpoint not in model.endpoints:
            raise ServiceError(
                422,
                "invalid_parameters",
                f"model {name!r} is a {model.kind}; /{endpoint} accepts {accepted}",
            )
        if model.state is ModelState.LOADING:
            raise ServiceError(
                503,
                "not_ready",
                f"model {name!r} is still loading; retry shortly",
                {"Retry-After": "2"},
            )
        if not model.available:
            raise ServiceError(
                503,
                "model_unavailable",
                f"model {name!r} is unavailable: {model.reason}",
                {"Retry-After": "30"},  # it stays so until the fix and a restart
            )
        return model

    async def run(
        self, model: ServedModel, key: Hashable, payload: Any, size: int, request: Request
    ) -> Any:
        """Batch ``payload`` with other requests for ``model``; give up when the client leaves."""
        watcher = asyncio.create_task(_cancel_on_disconnect(request, asyncio.current_task()))
        try:
            return await self.batchers[model.name].submit(
                payload, size, key, self.settings.request_timeout_s
            )
        except asyncio.CancelledError:
            if not watcher.done():
                raise  # cancelled by the server, not by the client leaving
            # the batcher has dropped the request if it had not run yet; the cancellation is
            # handled here, so later timeouts in this task must not see it
            asyncio.current_task().uncancel()
            raise ServiceError(499, "client_closed_request", "the client disconnected") from None
        except QueueFull as err:
            raise ServiceError(
                503,
                "overloaded",
                f"the queue for {model.name!r} is full ({err}); retry after the Retry-After "
                "seconds",
                {"Retry-After": "1"},
            ) from None
        except ShuttingDown:
            raise shutting_down() from None
        except DeadlineExceeded as err:
            raise ServiceError(
                504,
                "timeout",
                f"{err} (UNCONV_REQUEST_TIMEOUT_S); retry later or with fewer images",
            ) from None
        finally:
            watcher.cancel()

    async def close(self) -> None:
        """Stop accepting, answer everything accepted, release the executor."""
        self.closing = True
        if self._loader is not None:
            await asyncio.gather(self._loader, return_exceptions=True)
        await asyncio.gather(*(b.close() for b in self.batchers.values()))
        self.executor.shutdown(wait=True)
        self.codec.shutdown()
        unfreeze_objects()


async def _cancel_on_disconnect(request: Request, task: asyncio.Task) -> None:
    """Cancel ``task`` when the client disconnects (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    task.cancel()
