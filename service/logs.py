"""Logging for every PSCT process: text for a terminal, or one JSON object per line (PSCT_LOG_FORMAT=json)
with the job id of the work in progress. Log calls never pass patient names or IDs
(tests/service/test_logs.py checks every record of a job's whole path)."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(process)d %(message)s"
_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("psct_job_id", default=None)


class JobIdFilter(logging.Filter):
    """Adds `job_id` to every record: the one passed in `extra`, else the job this context runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = _job_id.get()
        return True


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


def configure(log_format: str, role: str) -> None:
    """Root logging for a process; `role` (gateway, scp, worker, serve) goes on every JSON line."""
    handler = logging.StreamHandler()
    handler.addFilter(JobIdFilter())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"levelname": "level", "name": "logger"},
                static_fields={"role": role},
                timestamp="time",
            )  # fmt: skip  # ISO 8601, UTC
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # INFO of these is noise at scale: one line per plugin at each start, per CT slice sent.
    for chatty in ("alembic.runtime.plugins", "pynetdicom"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # warnings become records too: one format on stderr
