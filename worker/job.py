"""Run one job end to end: read the pair, reconstruct, write the series, deliver, record the outcome."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from model.errors import ModelInputError
from service import files, metrics
from service.settings import Destination, Settings
from service.store import EXPORT, FAILED, JOB_FINISHED, PENDING, RUNNING, SENT, SUCCEEDED, JobStore, aware, utcnow
from service.tls import export_context
from worker import delivery
from worker.ct_series import SeriesUids, ct_series
from worker.pipeline import reconstruct
from worker.preview import caption_for, preview_png
from worker.runtime import ModelRuntime, cached

log = logging.getLogger(__name__)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time one stage of a job into psct_stage_seconds{stage=name}."""
    start = time.perf_counter()
    try:
        yield
    finally:
        metrics.STAGE_SECONDS.labels(name).observe(time.perf_counter() - start)


def run_reconstruction(job_id: str, store: JobStore, settings: Settings) -> None:
    job = store.get(job_id)
    if job is None:
        log.error("job %s is not in the store; message dropped", job_id)
        return
    if job.status in (SUCCEEDED, FAILED):
        log.info("job %s already %s; redelivered message ignored", job_id, job.status)
        return
    started_at = utcnow()
    store.update(job_id, status=RUNNING, started_at=started_at, progress=0.05, error=None)
    log.info("job %s started (%s)", job_id, job.source)
    created_at = aware(job.created_at) or started_at
    metrics.QUEUE_WAIT_SECONDS.observe(max(0.0, (started_at - created_at).total_seconds()))
    try:
        runtime = cached(settings.model_path, settings.cuda_device)
        # dcmread is lazy: the pixels are decoded in the pipeline's "decode" stage.
        pa = dcmread(settings.home / str(job.pa_path))
        lateral = dcmread(settings.home / str(job.lateral_path))
        volume, notes = reconstruct(
            pa, lateral, runtime, lambda p: store.update(job_id, progress=p), stage, settings.room
        )
        with stage("encode"):
            write_outputs(job_id, volume, pa, lateral, runtime, settings, notes)
        store.update(
            job_id,
            progress=0.8,
            notes_json=json.dumps(notes),
            model=runtime.label,
            series_instance_uid=SeriesUids.for_job(job_id).series,
            instances=volume.shape[0],
        )
    except ModelInputError as exc:
        _fail(store, job_id, f"input refused: {exc}")
        return
    except Exception as exc:  # a bug or a broken model file: record it, never leave the job hanging
        log.exception("job %s failed", job_id)
        _fail(store, job_id, f"internal error: {type(exc).__name__}: {exc}")
        return
    deliver_job(job_id, store, settings)


def write_outputs(
    job_id: str,
    volume: np.ndarray,
    pa: Dataset,
    lateral: Dataset,
    runtime: ModelRuntime,
    settings: Settings,
    geometry_notes: list[str],
) -> list[Path]:
    datasets = ct_series(
        volume, runtime.voxel_mm, pa, lateral, job_id, runtime.sidecar, datetime.now(UTC), geometry_notes
    )
    paths = files.write_series(settings.home, job_id, datasets)
    files.write_file(files.preview_path(settings.home, job_id), preview_png(volume, caption_for(runtime.sidecar)))
    return paths


def deliver_job(job_id: str, store: JobStore, settings: Settings) -> None:
    """Send the series to every destination not yet served; the job ends succeeded or failed."""
    job = store.get(job_id)
    assert job is not None
    paths = files.series_files(settings.home, job_id)
    if not paths:
        _fail(store, job_id, "no series on disk to deliver")
        return
    failures = []
    for row in job.destinations:
        if row.state == SENT:
            continue
        destination = Destination(row.destination)
        attempts_before = row.attempts

        def record(
            attempt: int, ok: bool, status: str, name: str = row.destination, base: int = attempts_before
        ) -> None:
            store.set_delivery(job_id, name, attempts=base + attempt, last_status=status, state=SENT if ok else PENDING)
            detail = {"destination": name, "attempt": base + attempt, "sent": ok, "status": status,
                      "instances": len(paths)}  # fmt: skip
            store.audit(EXPORT, job_id, detail)

        with stage("send"):
            sent = delivery.deliver(
                paths, destination, settings.ae_title, settings.delivery_attempts, settings.delivery_backoff_s,
                record, export_context(settings),
            )  # fmt: skip
        if not sent:
            store.set_delivery(job_id, row.destination, state=FAILED)
            failures.append(row.destination)
    if failures:
        _fail(store, job_id, f"delivery failed to {', '.join(failures)} after {settings.delivery_attempts} attempts")
    else:
        store.update(job_id, status=SUCCEEDED, progress=1.0, finished_at=utcnow(), error=None)
        log.info("job %s succeeded: %d instances delivered to %d destinations", job_id, len(paths),
                 len(job.destinations))  # fmt: skip
        _finished(store, job_id, SUCCEEDED, None)


def resend(job_id: str, store: JobStore, settings: Settings) -> None:
    """Deliver the existing series again (same UIDs) to every destination."""
    job = store.get(job_id)
    if job is None or not files.series_files(settings.home, job_id):
        log.error("resend of job %s: no series", job_id)
        return
    for row in job.destinations:
        store.set_delivery(job_id, row.destination, state=PENDING)
    store.update(job_id, status=RUNNING, finished_at=None, error=None)
    deliver_job(job_id, store, settings)


def _fail(store: JobStore, job_id: str, message: str) -> None:
    log.warning("job %s failed: %s", job_id, message)
    store.update(job_id, status=FAILED, finished_at=utcnow(), error=message)
    _finished(store, job_id, FAILED, message)


def _finished(store: JobStore, job_id: str, status: str, error: str | None) -> None:
    metrics.JOBS_DONE.labels(status).inc()
    job = store.get(job_id)
    store.audit(JOB_FINISHED, job_id, {"status": status, "error": error,
                                       "series_instance_uid": job.series_instance_uid if job else None})  # fmt: skip
