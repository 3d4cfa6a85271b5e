"""What a worker process does before it takes its first message: load the model (its sha256 checked
against the sidecar: a worker with a broken model never starts), announce itself in the store's
`workers` table with a heartbeat, and serve its own /metrics, /healthz and /readyz."""

from __future__ import annotations

import logging
import threading

from service import metrics, metrics_server
from service.readiness import model_check, shared_checks
from service.settings import Settings
from service.store import HEARTBEAT_S, JobStore, utcnow
from worker.lease import holder
from worker.runtime import ModelRuntime, cached

log = logging.getLogger(__name__)


def start(settings: Settings, store: JobStore) -> ModelRuntime:
    runtime = cached(settings.model_path, settings.cuda_device)  # raises ModelFileError when broken
    sidecar = runtime.sidecar
    metrics.MODEL_INFO.labels(sidecar["name"], sidecar["version"], sidecar["sha256"], runtime.provider).set(1)
    port = settings.metrics_port or None
    if port is not None:
        metrics_server.serve(settings.metrics_host, port, lambda: readiness(settings, store, runtime))
    started_at, me = utcnow(), holder()

    def beat() -> None:
        store.beat(me, runtime.label, runtime.provider, port, started_at)

    beat()  # before any message is taken: the gateway sees this worker at once

    def loop() -> None:
        while not stopped.wait(HEARTBEAT_S):
            try:
                beat()
            except Exception:  # the store is down for a moment: the next beat tries again
                log.exception("worker heartbeat failed")

    stopped = threading.Event()
    threading.Thread(target=loop, name="heartbeat", daemon=True).start()
    log.info("worker %s ready: %s on %s", me, runtime.label, runtime.provider)
    return runtime


def readiness(settings: Settings, store: JobStore, runtime: ModelRuntime) -> dict[str, str]:
    """Model loaded (this process's session) and its file unchanged on disk, store and broker reachable,
    disk above the watermark."""
    same = runtime.path == settings.model_path
    model = model_check(settings) if same else f"failed: serving {runtime.path}, not PSCT_MODEL_PATH"
    return {"model": model, **shared_checks(settings, store)}
