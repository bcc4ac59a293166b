"""The engine: the served models, a batcher each, and readiness. It knows nothing of HTTP:
callers submit jobs and get results or a ``RequestError``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from ..models import exact_convolutions, resolve_device
from ..runtime import freeze_loaded_objects, unfreeze_objects
from ..settings import Settings
from .atlases import ServedAtlas, atlas_files, find, load_atlases
from .attribution import OPERATIONS as ATTRIBUTION_OPERATIONS
from .batcher import Batcher, DeadlineExceeded, QueueFull, ShuttingDown
from .errors import ErrorCode, RequestError, not_ready, shutting_down
from .generations import Action
from .metrics import Metrics
from .peers import Peers
from .registry import ModelState, ServedModel, discover, load, rediscover
from .runner import OPERATIONS, CodecPool, ThreadShare, make_predict, single_threaded
from .watch import changed, checkpoint_files

log = logging.getLogger("unconv")


def _forward_threads(settings: Settings, cores: int) -> int:
    """CPU threads for forward passes: UNCONV_TORCH_THREADS, else this process's share of the
    cores (PyTorch's own default counts the physical cores, whatever a container allows)."""
    share = min(torch.get_num_threads(), cores)
    return settings.torch_threads or max(1, share)


class Engine:
    """Models and batchers of one running service. Models load in the background after
    ``start``; ``peers.mark_ready`` is called once they all have.

    Parameters
    ----------
    settings : Settings
        The service's settings.
    metrics : Metrics
        Where the batchers report.
    cores : int
        This process's share of the machine's cores, for its forward passes and codec threads.
    peers : Peers, optional
        The other worker processes of the port: told when this one is ready, and the loads
        and unloads shared with them. By default a single process.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        cores: int,
        peers: Peers | None = None,
    ):
        self.settings = settings
        self.peers = peers or Peers()
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
        self.codec = CodecPool(settings.codec_threads or min(4, cores))
        self.threads = ThreadShare(_forward_threads(settings, cores))
        self.models: dict[str, ServedModel] = discover(settings)
        self.batchers: dict[str, Batcher] = {}
        self.ready = False
        self.closing = False
        self.revision = 0  # counts changes to what is served: models, atlases
        self._swapping = asyncio.Lock()
        self._loader: asyncio.Task | None = None
        self.generations = self.peers.generations
        self._done: dict[str, int] = {}  # name: the last shared generation this worker applied
        self._seen = 0  # the shared revision whose table this worker has applied
        self._following: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._unloaded_here: set[str] = set()  # unloaded on request: a watch leaves them so
        self.atlases: dict[str, ServedAtlas] = {}  # by network: see atlases.py

    WATCH_INTERVAL_S = 2.0

    @property
    def serving(self) -> bool:
        """Ready to serve: this worker's models and every other worker's loaded, and not
        shutting down (what /readyz answers)."""
        return self.ready and not self.closing and self.peers.all_ready()

    def start(self) -> None:
        if self.settings.watch_checkpoints:
            # before the loads, so that a checkpoint rewritten while they run is seen as changed
            seen = checkpoint_files(self.settings.checkpoint_dir)
            self._watcher = asyncio.create_task(self._watch(seen), name="watch-checkpoints")
        self._loader = asyncio.create_task(self._load_all(), name="load-models")

    async def _load_all(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        # a worker started late (one that replaces a dead one) reads the files as they are
        # now, which the loads so far have read too; what was unloaded stays unloaded
        seen, table = self._shared_table()
        for model in self.models.values():
            if table.get(model.name, (0, "load"))[1] == "unload":
                self.models[model.name] = self._unloaded(model)
                continue
            await loop.run_in_executor(self.executor, load, model, s, self.device)
            if model.available:
                self.batchers[model.name] = self._batcher(model)
        self._done = {name: generation for name, (generation, _) in table.items()}
        self._seen = seen
        await self._refresh_atlases()
        freeze_loaded_objects()
        self.ready = True
        self.peers.mark_ready()
        loaded = sum(m.available for m in self.models.values())
        log.info("ready on %s: %d of %d models loaded", self.device, loaded, len(self.models))

    def _batcher(self, model: ServedModel) -> Batcher:
        s = self.settings
        batcher = Batcher(
            make_predict(
                model,
                self.device,
                s.max_image_pixels,
                self.codec,
                self.threads,
                OPERATIONS | ATTRIBUTION_OPERATIONS,
            ),
            max_batch_size=s.max_batch_size,
            max_delay_s=s.max_delay_ms / 1000,
            max_queue=s.max_queue,
            executor=self.executor,
            concurrency=s.concurrent_batches,
            observer=self.metrics.observer(model.name),
            name=f"batch {model.name}",
        )
        batcher.start()
        return batcher

    async def reload(self, name: str) -> ServedModel:
        """Load ``name`` from its files again (a checkpoint may be new) and serve it in place
        of the model loaded before: requests already accepted finish on the old one.

        Raises
        ------
        RequestError
            ``unknown_model`` when no file or network has that name; ``load_failed`` when it
            does not load (the old model keeps serving).
        """
        if not self.ready or self.closing:
            raise not_ready("the models are")
        async with self._swapping:
            model = await self._reload(name)
            self._publish(name, "load")
            return model

    async def _reload(self, name: str) -> ServedModel:
        model = rediscover(self.settings, name)
        if model is None:
            raise RequestError(
                ErrorCode.UNKNOWN_MODEL,
                f"no checkpoint {name}.json in UNCONV_CHECKPOINT_DIR and no network {name!r} "
                "in UNCONV_NETWORKS",
            )
        # off the event loop, and off the inference threads, which keep serving
        await asyncio.to_thread(load, model, self.settings, self.device)
        if not model.available:
            raise RequestError(
                ErrorCode.LOAD_FAILED, f"model {name!r} did not load: {model.reason}"
            )
        batcher = self._batcher(model)
        await self._swap(name, model, batcher)
        self._unloaded_here.discard(name)
        await self._refresh_atlases()
        log.info("loaded %s (%s)", name, model.metadata.get("sha256", "torchvision"))
        return model

    async def unload(self, name: str) -> None:
        """Stop serving ``name``; the requests it accepted are answered first."""
        if not self.ready or self.closing:
            raise not_ready("the models are")
        async with self._swapping:
            await self._unload(name)
            self._publish(name, "unload")

    async def _unload(self, name: str) -> None:
        if name not in self.models:
            raise RequestError(ErrorCode.UNKNOWN_MODEL, f"no model {name!r}")
        await self._swap(name, self._unloaded(self.models[name]), None)
        self._unloaded_here.add(name)
        await self._refresh_atlases()

    @staticmethod
    def _unloaded(old: ServedModel) -> ServedModel:
        gone = ServedModel(old.name, old.kind, old.path)
        gone.mark_unavailable(
            f"unloaded (POST /v2/repository/models/{old.name}/unload); "
            f"POST /v2/repository/models/{old.name}/load serves it again"
        )
        return gone

    # -- the other workers' loads and unloads ----------------------------------------------

    def _shared_table(self) -> tuple[int, dict[str, tuple[int, Action]]]:
        if self.generations is None:
            return 0, {}
        seen = self.generations.revision()  # before the table: it holds at least this much
        return seen, self.generations.table()

    def _publish(self, name: str, action: Action) -> None:
        if self.generations is not None:
            self._done[name] = self.generations.publish(name, action)

    async def follow(self) -> None:
        """Load or unload what another worker process has loaded or unloaded since this one
        last looked; called before each request. Cheap when nothing changed: one shared integer
        read. Requests that arrive meanwhile wait for the same catch-up."""
        if self.generations is None or not self.ready or self.closing:
            return
        while self.generations.revision() != self._seen:
            if self._following is None or self._following.done():
                self._following = asyncio.create_task(self._catch_up(), name="follow-workers")
            await asyncio.shield(self._following)

    async def _catch_up(self) -> None:
        seen, table = self._shared_table()
        async with self._swapping:
            for name, (generation, action) in sorted(table.items()):
                if self.closing:
                    return
                if generation <= self._done.get(name, 0):
                    continue
                swap = self._reload if action == "load" else self._unload
                try:
                    await swap(name)
                except RequestError as err:  # that worker's files loaded, this one's did not
                    log.error("could not %s %s as another worker did: %s", action, name, err)
                self._done[name] = generation
        self._seen = max(self._seen, seen)

    async def _refresh_atlases(self) -> None:
        """Find the atlases again and check each against the weights its network serves."""
        directory = self.settings.checkpoint_dir
        atlases = await asyncio.to_thread(load_atlases, directory, dict(self.models))
        if atlases != self.atlases:
            self.atlases = atlases
            self.revision += 1

    async def atlas(self, network: str, layer: int, channel: int) -> tuple:
        """The served atlas of ``network`` and the entries of one feature map (``atlases.find``,
        whose errors it raises), read off the event loop."""
        return await asyncio.to_thread(find, self.atlases, network, layer, channel)

    async def _watch(self, seen: dict) -> None:
        """Reload each checkpoint whose files changed (``UNCONV_WATCH_CHECKPOINTS``), and
        find the atlases again when theirs did."""
        await self.wait_ready()
        directory = self.settings.checkpoint_dir
        atlases_seen = await asyncio.to_thread(atlas_files, directory)
        while not self.closing:
            await asyncio.sleep(self.WATCH_INTERVAL_S)
            atlases_now = await asyncio.to_thread(atlas_files, directory)
            if atlases_now != atlases_seen:
                await self._refresh_atlases()
                atlases_seen = atlases_now
            now = await asyncio.to_thread(checkpoint_files, directory)
            for name in changed(seen, now):
                if self.closing or name in self._unloaded_here:
                    continue
                try:
                    async with self._swapping:
                        await self._reload(name)
                except RequestError as err:  # the old model, if any, keeps serving
                    log.error("%s changed on disk but did not load: %s", name, err.detail)
                except Exception:  # files vanishing mid-read must not end the watch
                    log.exception("%s changed on disk but did not load", name)
            seen = now

    async def _swap(self, name: str, model: ServedModel, batcher: Batcher | None) -> None:
        # one step, with no await: each request sees the old model and batcher or the new
        self.models[name] = model
        old = self.batchers.pop(name, None)
        if batcher is not None:
            self.batchers[name] = batcher
        self.revision += 1
        if old is not None:
            await old.close()  # answers what it accepted, then its model can be freed

    async def wait_ready(self) -> None:
        if self._loader is not None:
            await asyncio.shield(self._loader)

    def model(self, name: str, endpoint: str | None = None) -> ServedModel:
        """The loaded model ``name``, for ``endpoint`` when one is given (``"visualise"``...),
        or the error that explains why not: ``unknown_model``, ``invalid_parameters`` (a model
        of another kind), ``not_ready`` or ``model_unavailable``."""
        if self.closing:
            raise shutting_down()
        model = self.models.get(name)
        if model is None:
            accepted = sorted(self.models) if endpoint is None else self._accepting(endpoint)
            where = "the service has" if endpoint is None else f"/{endpoint} accepts"
            raise RequestError(
                ErrorCode.UNKNOWN_MODEL,
                f"no model {name!r}; {where} {accepted} (GET /models lists every model)",
            )
        if endpoint is not None and model.kind != "unknown" and endpoint not in model.endpoints:
            raise RequestError(
                ErrorCode.INVALID_PARAMETERS,
                f"model {name!r} is a {model.kind}; /{endpoint} accepts "
                f"{self._accepting(endpoint)}",
            )
        if model.state is ModelState.LOADING:
            raise not_ready(f"model {name!r} is")
        if not model.available:
            raise RequestError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"model {name!r} is unavailable: {model.reason}",
                30,  # it stays so until the fix and a restart
            )
        return model

    def _accepting(self, endpoint: str) -> list[str]:
        """The models ``endpoint`` accepts, for an error's detail (never on the busy path)."""
        return sorted(n for n, m in self.models.items() if endpoint in m.endpoints)

    async def submit(self, model: ServedModel, key: Hashable, job: Any, size: int) -> Any:
        """Batch ``job`` (``size`` items) with other jobs of ``model`` under the same ``key``;
        its result, or a ``RequestError`` when it is refused or too late."""
        batcher = self.batchers.get(model.name)
        if batcher is None:  # unloaded since the request found it
            raise RequestError(
                ErrorCode.MODEL_UNAVAILABLE, f"model {model.name!r} was just unloaded", 30
            )
        try:
            return await batcher.submit(job, size, key, self.settings.request_timeout_s)
        except QueueFull as err:
            raise RequestError(
                ErrorCode.OVERLOADED,
                f"the queue for {model.name!r} is full ({err}); retry after the Retry-After "
                "seconds",
                1,
            ) from None
        except ShuttingDown:
            raise shutting_down() from None
        except DeadlineExceeded as err:
            raise RequestError(
                ErrorCode.TIMEOUT,
                f"{err} (UNCONV_REQUEST_TIMEOUT_S); retry later or with fewer images",
            ) from None

    async def close(self) -> None:
        """Stop accepting, answer everything accepted, release the executor."""
        self.closing = True
        if self._watcher is not None:
            self._watcher.cancel()
        tasks = [t for t in (self._loader, self._watcher) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(b.close() for b in self.batchers.values()))
        self.executor.shutdown(wait=True)
        self.codec.shutdown()
        unfreeze_objects()
