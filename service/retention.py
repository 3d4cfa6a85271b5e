"""Data retention (PSCT_RETENTION_DAYS): a finished job's received instances, upload and results are
deleted once it is older than the limit, and an audit entry records it. Jobs still queued or running
are never touched, so nothing acknowledged is lost before it was processed.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from service import files
from service.settings import Settings
from service.store import PURGED, JobStore, aware, utcnow

log = logging.getLogger(__name__)
# The listener's sweep purges this often (and once at start).
RETENTION_SWEEP_S = 3600.0


def _remove(home: Path, relative: str | None) -> int:
    """Delete a file under PSCT_HOME named by a stored relative path; returns files removed."""
    if not relative:
        return 0
    path = (home / relative).resolve()
    if not path.is_relative_to(home) or not path.is_file():  # stored paths are ours; never leave home
        return 0
    path.unlink()
    with contextlib.suppress(OSError):  # the study's inbox folder, once empty
        path.parent.rmdir()
    return 1


def purge(settings: Settings, store: JobStore, now: datetime | None = None) -> list[str]:
    """Purge every finished job older than the retention limit; returns their ids."""
    if settings.retention_days is None:
        return []
    cutoff = (now or utcnow()) - timedelta(days=settings.retention_days)
    purged = []
    for job in store.finished_before(cutoff):
        home = settings.home
        removed = sum(_remove(home, p) for p in {job.pa_path, job.lateral_path, *store.instance_paths(job.id)})
        for folder in (files.upload_dir(home, job.id), files.job_dir(home, job.id)):
            if folder.is_dir():
                removed += sum(1 for p in folder.rglob("*") if p.is_file())
                shutil.rmtree(folder)
        finished = aware(job.finished_at)
        store.audit(
            PURGED,
            job.id,
            f"retention {settings.retention_days:g} days: {removed} files deleted (job {job.status}, "
            f"finished {finished.isoformat() if finished else '?'})",
        )
        log.info("job %s: purged after %g days (%d files)", job.id, settings.retention_days, removed)
        purged.append(job.id)
    return purged
