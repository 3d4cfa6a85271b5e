"""PSCT_RETENTION_DAYS: finished jobs' data is purged after the limit, with an audit entry; work in
flight and recent jobs are never touched."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service import files
from service.api import create_app
from service.retention import purge
from service.settings import get_settings
from service.store import FAILED, PURGED, RUNNING, SUCCEEDED, JobStore, utcnow
from tests.conftest import apply_env, wait_for
from tests.service.test_listener import Running


def _job_with_files(store: JobStore, home: Path, status: str, finished_days_ago: float | None) -> str:
    study = "1.2.3.4"
    with store.session() as session:
        job = store.create_job(session, source="dicom", study_uid=study, pa_path="", lateral_path="",
                               destinations=[], notes=[])  # fmt: skip
    inbox = [files.inbox_path(home, study, f"1.2.3.4.{job.id[:6]}.{k}") for k in (1, 2)]
    for path in inbox:
        files.write_file(path, b"DICM instance")
    files.write_file(files.series_dir(home, job.id) / "slice.dcm", b"CT slice")
    finished = None if finished_days_ago is None else utcnow() - timedelta(days=finished_days_ago)
    store.update(job.id, status=status, finished_at=finished, pa_path=str(inbox[0].relative_to(home)),
                 lateral_path=str(inbox[1].relative_to(home)))  # fmt: skip
    return job.id


def _kept(home: Path, job_id: str) -> bool:
    job = JobStore(get_settings().database).get(job_id)
    assert job is not None
    return (home / str(job.pa_path)).is_file() and files.job_dir(home, job_id).is_dir()


def test_old_finished_jobs_are_purged_once_with_an_audit_entry(
    psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env({"PSCT_RETENTION_DAYS": "7"}, monkeypatch)
    settings = get_settings()
    store, home = JobStore(settings.database), settings.home
    old_ok = _job_with_files(store, home, SUCCEEDED, 10)
    old_failed = _job_with_files(store, home, FAILED, 8)
    recent = _job_with_files(store, home, SUCCEEDED, 2)
    in_flight = _job_with_files(store, home, RUNNING, None)  # received long ago or not: never purged
    assert sorted(purge(settings, store)) == sorted([old_ok, old_failed])
    assert not _kept_any(home, old_ok) and not _kept_any(home, old_failed)
    assert _kept(home, recent) and _kept(home, in_flight)
    entries = store.audit_events(PURGED)
    assert {e.job_id for e in entries} == {old_ok, old_failed}
    assert all("retention 7 days: 3 files deleted" in e.detail for e in entries)
    assert purge(settings, store) == [] and len(store.audit_events(PURGED)) == 2  # once only
    # The job record stays; its series is gone, and the API says so.
    answer = TestClient(create_app()).get(f"/reconstructions/{old_ok}/series")
    assert answer.status_code == 410 and "PSCT_RETENTION_DAYS" in answer.json()["detail"]


def _kept_any(home: Path, job_id: str) -> bool:
    return files.job_dir(home, job_id).exists() or any((home / "inbox").rglob(f"*{job_id[:6]}*"))


def test_without_a_retention_limit_nothing_is_purged(psct_env: dict[str, str]) -> None:
    settings = get_settings()
    store = JobStore(settings.database)
    job_id = _job_with_files(store, settings.home, SUCCEEDED, 400)
    assert purge(settings, store) == [] and _kept(settings.home, job_id)


def test_the_listener_purges_at_start(psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env({"PSCT_RETENTION_DAYS": "1"}, monkeypatch)
    settings = get_settings()
    store = JobStore(settings.database)
    job_id = _job_with_files(store, settings.home, SUCCEEDED, 3)
    running = Running(monkeypatch, psct_env).start()
    try:
        wait_for(lambda: store.was_purged(job_id), 10, "the purge at the listener's start")
    finally:
        running.stop()
    assert not files.job_dir(settings.home, job_id).exists()
