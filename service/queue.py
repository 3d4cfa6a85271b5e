"""The Celery app shared by the gateway, the listener and the workers: one code path for both queues.

Embedded (PSCT_BROKER_URL unset): kombu's SQLAlchemy transport on SQLite in PSCT_HOME, no server,
persists across restarts. Scaled: any Celery broker URL, e.g. Redis. Only job ids travel, as JSON.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from service.settings import Settings, get_settings

TASK_RECONSTRUCT = "psct.reconstruct"
TASK_RESEND = "psct.resend"
QUEUE = "psct"
SQLITE_TIMEOUT_S = 30.0
# Redis redelivers an unacknowledged message after this long: longer than any reconstruction
# plus its delivery retries, so a slow job is never run twice at once.
REDIS_VISIBILITY_TIMEOUT_S = 3600


def make_celery(settings: Settings) -> Celery:
    settings.home.mkdir(parents=True, exist_ok=True)
    app = Celery("psct", broker=settings.broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle
        task_ignore_result=True,  # the job store holds outcomes
        task_acks_late=True,  # a message is acknowledged only after its task ran
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options=(
            # kombu's SQLAlchemy transport hands these to create_engine: wait for SQLite's lock.
            {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
            if settings.embedded_queue
            else {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT_S}
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


def ping_broker(timeout_s: float = 2.0) -> None:
    with celery_app().connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout_s)
