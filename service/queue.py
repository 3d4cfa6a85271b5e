"""The Celery app shared by the gateway, the listener and the workers: one code path for both queues.

Embedded (PSCT_BROKER_URL unset): kombu's SQLAlchemy transport on SQLite in PSCT_HOME, no server,
persists across restarts. Scaled: any Celery broker URL, e.g. Redis. Only job ids travel, as JSON.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from celery import Celery
from kombu import Queue

from service.settings import Settings, get_settings

TASK_RECONSTRUCT = "psct.reconstruct"
TASK_RESEND = "psct.resend"
QUEUE = "psct"
SQLITE_TIMEOUT_S = 30.0
DECLARE_ATTEMPTS = 5

log = logging.getLogger(__name__)


def make_celery(settings: Settings) -> Celery:
    settings.home.mkdir(parents=True, exist_ok=True)
    app = Celery("psct", broker=settings.broker, set_as_current=False)
    app.conf.update(
        # Only job ids travel, as JSON: a broker message can never make a worker unpickle code.
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # the job store holds outcomes; no result backend to run
        # Acknowledge after the task ran: a worker that dies mid-job leaves its message to be
        # delivered again. Safe because tasks are idempotent: output UIDs derive from the job id and
        # a finished job ignores its message.
        task_acks_late=True,
        # ... and also when the worker process is killed (OOM, kill -9) rather than failing it.
        task_reject_on_worker_lost=True,
        # A reconstruction takes seconds to minutes on a GPU: a worker reserves no second message
        # while it runs one, so an idle worker is never starved by a busy one holding the queue.
        worker_prefetch_multiplier=1,
        # One named queue, declared here; a task sent to a queue nobody declared is an error, not a
        # new queue that no worker reads.
        task_queues=(Queue(QUEUE),),
        task_default_queue=QUEUE,
        task_create_missing_queues=False,
        broker_connection_retry_on_startup=True,
        # A lost broker connection does not cancel the running job: the job store decides, and a
        # redelivered message of a finished job is ignored.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        broker_transport_options=(
            # kombu's SQLAlchemy transport hands these to create_engine: wait for SQLite's lock.
            {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
            if settings.embedded_queue
            # Redis hands an unacknowledged message to another worker after this long. With
            # prefetch 1 a message is taken only when a worker is free, so no queue wait counts:
            # it must exceed the longest run (inference plus every delivery retry), else a slow job
            # runs twice at once. A crashed worker's job comes back sooner through its lease.
            else {"visibility_timeout": settings.visibility_timeout_s}
        ),
    )
    return app


@lru_cache
def celery_app() -> Celery:
    return make_celery(get_settings())


def enqueue_reconstruction(job_id: str) -> None:
    celery_app().send_task(TASK_RECONSTRUCT, args=[job_id], queue=QUEUE)


def enqueue_resend(job_id: str) -> None:
    celery_app().send_task(TASK_RESEND, args=[job_id], queue=QUEUE)


def declare_queue() -> None:
    """Make sure the queue exists before this process uses it; never raises (a broker that is down
    is reported by /readyz, and Celery keeps retrying). kombu's SQLAlchemy transport creates its
    queue row by select-then-insert: processes starting together on a fresh PSCT_HOME race on it,
    and a Celery worker that loses the race exits ("UNIQUE constraint failed: kombu_queue.name",
    seen in a kill -9 sweep). The loser's next attempt finds the row."""
    for attempt in range(1, DECLARE_ATTEMPTS + 1):
        try:
            queue_depth()  # declares it (not passive), with a connection timeout
            return
        except Exception as exc:
            if attempt == DECLARE_ATTEMPTS:
                log.warning("could not declare queue %s: %s", QUEUE, exc)
            time.sleep(0.2 * attempt)


def ping_broker(timeout_s: float = 2.0) -> None:
    with celery_app().connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout_s)


def queue_depth(timeout_s: float = 2.0) -> int:
    """Messages waiting in the broker's queue (not those a worker holds unacknowledged)."""
    with celery_app().connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout_s)
        # Declaring (not passive): a queue no task was ever sent to exists, empty, instead of an error.
        return int(connection.default_channel.queue_declare(queue=QUEUE).message_count)
