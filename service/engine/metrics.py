"""Prometheus metrics: requests by route and status, what the batchers do, whether the
process is ready, and how often the supervisor replaced a worker."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from .batcher import BatchObserver

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """One registry per app, so that several apps (tests) never share counters.

    Parameters
    ----------
    multiprocess_dir : Path, optional
        Under several workers (``service/workers.py``), the directory where each process writes
        its values (prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``, set before it is
        imported); ``render`` then sums every worker's. None for a single process.
    """

    def __init__(self, multiprocess_dir: Path | None = None):
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "unconv_requests_total",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "unconv_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "unconv_queue_wait_seconds",
            "Time a request waited for its forward pass",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "unconv_batch_size",
            "Items (images) per forward pass",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "unconv_batch_requests",
            "Requests per forward pass",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "unconv_inference_seconds",
            "Time of one batched forward pass",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "unconv_queue_depth",
            "Items waiting for a forward pass",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",  # the workers' queues, of live workers only
        )

    def observer(self, model: str) -> BatchObserver:
        return _ModelObserver(self, model)

    def render(self, ready: bool) -> bytes:
        """The metrics in Prometheus's text format, every worker's summed, with ``unconv_ready``
        (``ready``: whether /readyz answers 200 now)."""
        registry = self.registry
        if self.multiprocess_dir is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        readiness = GaugeMetricFamily(
            "unconv_ready", "1 when every worker has loaded its models (/readyz answers 200)"
        )
        readiness.add_metric([], float(ready))
        return generate_latest(registry) + generate_latest(_Fixed([readiness]))


class _Fixed:
    """A collector of metric families made at render time."""

    def __init__(self, families: list):
        self.families = families

    def collect(self):
        return self.families


def worker_restarts() -> Counter:
    """The supervisor's count of workers it replaced after they died; written to the
    multiprocess files (``python -m service`` with several workers), so every worker's
    /metrics answers it."""
    return Counter(
        "unconv_worker_restarts",
        "Worker processes replaced after they died",
        registry=None,
    )


class _ModelObserver(BatchObserver):
    def __init__(self, metrics: Metrics, model: str):
        self.batch_size = metrics.batch_size.labels(model)
        self.batch_requests = metrics.batch_requests.labels(model)
        self.inference = metrics.inference.labels(model)
        self.wait = metrics.queue_wait.labels(model)
        self.queue = metrics.queue_depth.labels(model)

    def batch(self, items: int, requests: int, seconds: float) -> None:
        self.batch_size.observe(items)
        self.batch_requests.observe(requests)
        self.inference.observe(seconds)

    def queue_wait(self, seconds: float) -> None:
        self.wait.observe(seconds)

    def depth(self, items: int) -> None:
        self.queue.set(items)
