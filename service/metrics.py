"""Prometheus metrics of this process. The gateway serves them on `/metrics`; a separate listener or
worker serves its own on PSCT_METRICS_PORT (service/metrics_server.py). Job counts and the queue
depth are read at scrape time, by the gateway only (every worker reporting them would multiply them
in a sum over targets)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()
UPLOADS = Counter("psct_rest_submissions", "REST submissions by outcome", ["outcome"], registry=REGISTRY)
STORES = Counter("psct_dicom_stores", "C-STORE requests received, by outcome", ["outcome"], registry=REGISTRY)
ASSOCIATIONS = Counter(
    "psct_dicom_associations",
    "Associations to the listener: outcome accepted or rejected, and why (ae_title, host, busy, other)",
    ["outcome", "reason"],
    registry=REGISTRY,
)
EXPORTS = Counter(
    "psct_exports",
    "C-STORE deliveries of a series (one association each) by destination and outcome",
    ["destination", "outcome"],
    registry=REGISTRY,
)
JOBS_DONE = Counter("psct_worker_jobs", "Jobs this worker ended, by final status", ["status"], registry=REGISTRY)
# Seconds: from a 50 ms decode to a 10 min delivery with retries.
STAGE_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0, 300.0, 600.0)
STAGE_SECONDS = Histogram(
    "psct_stage_seconds",
    "Worker stage latency: decode (read + preprocess), inference, encode (CT series + preview), send",
    ["stage"],
    buckets=STAGE_BUCKETS_S,
    registry=REGISTRY,
)
QUEUE_WAIT_SECONDS = Histogram(
    "psct_queue_wait_seconds",
    "From a job's creation to a worker starting it",
    buckets=STAGE_BUCKETS_S,
    registry=REGISTRY,
)
MODEL_INFO = Gauge(
    "psct_model_info",
    "The model this worker serves (value 1) and the ONNX Runtime execution provider it runs on",
    ["name", "version", "sha256", "provider"],
    registry=REGISTRY,
)


class ScrapeCollector(Collector):
    """Job counts by status, the broker queue's depth and live workers, read at scrape time from
    whatever the gateway set (the gateway sets them; elsewhere they stay empty)."""

    counts: Callable[[], dict[str, int]] = dict
    queue_depth: Callable[[], int | None] = staticmethod(lambda: None)
    live_workers: Callable[[], int | None] = staticmethod(lambda: None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("psct_jobs", "Jobs in the store by status", labels=["status"])
        for status, count in sorted(self.counts().items()):
            family.add_metric([status], count)
        yield family
        for name, doc, probe in (
            ("psct_queue_depth", "Messages waiting in the broker queue", self.queue_depth),
            ("psct_workers_live", "Workers whose heartbeat is recent", self.live_workers),
        ):
            try:
                value = probe()
            except Exception:  # broker or store down: the gauge is absent, /readyz says why
                value = None
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)


JOBS = ScrapeCollector()
REGISTRY.register(JOBS)


def render() -> bytes:
    return generate_latest(REGISTRY)
