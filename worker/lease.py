"""Job leases: a worker renews the lease of the job it runs; a lease left unrenewed (its worker was
killed, or its machine died) is claimed by any worker's sweeper and the job is queued again.

The embedded queue never redelivers a dead consumer's message and Redis only after its visibility
timeout (an hour): the store's leases bring a crashed job back within PSCT_LEASE_S. A job queued
twice runs once: a finished job ignores its second message.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from service.queue import enqueue_reconstruction
from service.settings import Settings
from service.store import FAILED, SUCCEEDED, JobStore, utcnow

log = logging.getLogger(__name__)
RENEWALS_PER_LEASE = 4  # renew 4 times per lease period: one missed renewal never expires a lease


def holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


@contextmanager
def held(store: JobStore, job_id: str, settings: Settings) -> Iterator[None]:
    """Hold `job_id`'s lease while the block runs (renewed by a thread); drop it after."""
    store.hold_lease(job_id, holder())
    done = threading.Event()

    def renew() -> None:
        while not done.wait(settings.lease_s / RENEWALS_PER_LEASE):
            try:
                store.hold_lease(job_id, holder())
            except Exception:  # the store is down for a moment: the next renewal tries again
                log.exception("job %s: lease renewal failed", job_id)

    thread = threading.Thread(target=renew, name=f"lease-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        store.drop_lease(job_id)


def sweep(store: JobStore, settings: Settings) -> list[str]:
    """Queue again every job whose lease expired; returns their ids."""
    requeued = []
    for job_id in store.claim_expired_leases(utcnow() - timedelta(seconds=settings.lease_s)):
        job = store.get(job_id)
        if job is None or job.status in (SUCCEEDED, FAILED):
            continue
        log.warning("job %s: its worker stopped renewing the lease; queued again", job_id)
        enqueue_reconstruction(job_id)
        requeued.append(job_id)
    return requeued


def start_sweeper(store: JobStore, settings: Settings) -> threading.Thread:
    def loop() -> None:
        while True:
            try:
                sweep(store, settings)
            except Exception:
                log.exception("lease sweep failed; retrying")
            time.sleep(settings.lease_s / RENEWALS_PER_LEASE)

    thread = threading.Thread(target=loop, name="lease-sweeper", daemon=True)
    thread.start()
    return thread
