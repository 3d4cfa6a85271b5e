"""Job leases: a worker renews the lease of the job it runs; a lease left unrenewed (its worker was
killed, or its machine died) is claimed by any worker's sweeper and the job is queued again.

The embedded queue never redelivers a dead consumer's message and Redis only after its visibility
timeout (an hour): the store's leases bring a crashed job back within PSCT_LEASE_S. The sweeper
also sends again the message of an unfinished job nobody holds while the queue is empty: a gateway
or listener killed between committing a job and sending its message, a broker down at that moment,
or a worker killed between taking a message and its lease. A job queued twice runs once: a
finished job ignores its second message, and one whose lease another worker renews drops it.
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

from service.queue import enqueue_reconstruction, queue_depth
from service.settings import Settings
from service.store import FAILED, SUCCEEDED, JobStore, utcnow

log = logging.getLogger(__name__)
RENEWALS_PER_LEASE = 4  # renew 4 times per lease period: one missed renewal never expires a lease


def holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


@contextmanager
def held(store: JobStore, job_id: str, settings: Settings) -> Iterator[bool]:
    """Hold `job_id`'s lease while the block runs (renewed by a thread), then drop it. Yields False,
    and holds nothing, when another live worker holds it: the block must then leave the job alone."""
    if not store.take_lease(job_id, holder(), utcnow() - timedelta(seconds=settings.lease_s)):
        log.info("job %s: another worker runs it; duplicate message dropped", job_id)
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        while not done.wait(settings.lease_s / RENEWALS_PER_LEASE):
            try:  # never from a live holder: after a stall (our lease expired) a new worker may run it
                if not store.take_lease(job_id, holder(), utcnow() - timedelta(seconds=settings.lease_s)):
                    log.warning("job %s: another worker took the job over after a stall of this one", job_id)
            except Exception:  # the store is down for a moment: the next renewal tries again
                log.exception("job %s: lease renewal failed", job_id)

    thread = threading.Thread(target=renew, name=f"lease-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield True
    finally:
        done.set()
        thread.join()
        store.drop_lease(job_id, holder())  # only ours


def sweep(store: JobStore, settings: Settings) -> list[str]:
    """Queue again every job whose lease expired, then every job without a message; returns their ids."""
    cutoff = utcnow() - timedelta(seconds=settings.lease_s)
    requeued = []
    for job_id in store.claim_expired_leases(cutoff):
        job = store.get(job_id)
        if job is None or job.status in (SUCCEEDED, FAILED):
            continue
        log.warning("job %s: its worker stopped renewing the lease; queued again", job_id)
        enqueue_reconstruction(job_id)  # if this fails the job has no lease: the next pass sends it
        requeued.append(job_id)
    # With prefetch 1 a worker takes a message only to run it at once, under its lease: an empty
    # queue means an old unheld job has no message. (Messages still waiting: nothing to do.)
    orphans = [job_id for job_id in store.unleased_jobs(cutoff) if job_id not in requeued]
    if orphans and queue_depth() == 0:
        for job_id in orphans:
            log.warning("job %s: no queue message and no worker holds it; queued again", job_id)
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
