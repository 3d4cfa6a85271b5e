"""Prometheus metrics: event counters of this process, and job counts read from the store at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()
UPLOADS = Counter("psct_rest_submissions", "REST submissions by outcome", ["outcome"], registry=REGISTRY)
STORES = Counter("psct_dicom_stores", "C-STORE requests by outcome", ["outcome"], registry=REGISTRY)
REJECTED_ASSOCIATIONS = Counter(
    "psct_dicom_associations_rejected",
    "Associations refused by the AE or host allowlist",
    ["reason"],
    registry=REGISTRY,
)


class JobsCollector(Collector):
    """Job counts by status from whichever store this process serves (set by the gateway)."""

    counts: Callable[[], dict[str, int]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("psct_jobs", "Jobs in the store by status", labels=["status"])
        for status, count in sorted(self.counts().items()):
            family.add_metric([status], count)
        yield family


JOBS = JobsCollector()
REGISTRY.register(JOBS)


def render() -> bytes:
    return generate_latest(REGISTRY)
