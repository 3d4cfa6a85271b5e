"""Celery tasks: thin adapters, job ids in, the work is in worker/job.py."""

from __future__ import annotations

from functools import lru_cache

from service.logs import job_context
from service.queue import TASK_RECONSTRUCT, TASK_RESEND, celery_app
from service.settings import get_settings
from service.store import JobStore
from worker import job, lease

app = celery_app()


@lru_cache
def _store() -> JobStore:
    return JobStore(get_settings().database)


@app.task(name=TASK_RECONSTRUCT, acks_late=True)
def reconstruct(job_id: str) -> None:
    with job_context(job_id), lease.held(_store(), job_id, get_settings()) as ours:
        if ours:
            job.run_reconstruction(job_id, _store(), get_settings())


@app.task(name=TASK_RESEND, acks_late=True)
def resend(job_id: str) -> None:
    # Under the lease too: a resend in progress is neither run twice nor mistaken for a lost job.
    with job_context(job_id), lease.held(_store(), job_id, get_settings()) as ours:
        if ours:
            job.resend(job_id, _store(), get_settings())
