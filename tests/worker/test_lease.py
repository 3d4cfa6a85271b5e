"""Job leases: held and renewed while a job runs, claimed once when their worker stops renewing."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

from service.settings import get_settings
from service.store import RUNNING, SUCCEEDED, JobStore, utcnow
from tests.conftest import apply_env
from worker import lease


def _job(store: JobStore, status: str) -> str:
    with store.session() as session:
        job = store.create_job(session, source="rest", study_uid="1.2.3", pa_path="", lateral_path="",
                               destinations=[], notes=[])  # fmt: skip
    store.update(job.id, status=status)
    return job.id


def _queued(home: str) -> int:
    with sqlite3.connect(Path(home) / "queue.sqlite") as db:
        return db.execute("SELECT count(*) FROM kombu_message").fetchone()[0]


def test_a_held_lease_is_renewed_and_dropped(psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env({"PSCT_LEASE_S": "0.4"}, monkeypatch)
    settings = get_settings()
    store = JobStore(settings.database)
    job_id = _job(store, RUNNING)
    with lease.held(store, job_id, settings):
        time.sleep(1.0)  # 2.5 lease periods: renewals keep it alive
        assert store.claim_expired_leases(utcnow() - timedelta(seconds=settings.lease_s)) == []
    assert store.claim_expired_leases(utcnow() + timedelta(days=1)) == []  # dropped at the end


def test_an_abandoned_lease_requeues_its_job_once(psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env({"PSCT_LEASE_S": "0.2"}, monkeypatch)
    settings = get_settings()
    store = JobStore(settings.database)
    running, finished = _job(store, RUNNING), _job(store, SUCCEEDED)
    for job_id in (running, finished):
        store.hold_lease(job_id, "dead-host:1")  # taken, then never renewed: its worker was killed
    time.sleep(0.3)
    before = _queued(psct_env["PSCT_HOME"]) if (Path(psct_env["PSCT_HOME"]) / "queue.sqlite").exists() else 0
    assert lease.sweep(store, settings) == [running]  # the finished job is not run again
    assert lease.sweep(store, settings) == []  # claimed once
    assert _queued(psct_env["PSCT_HOME"]) == before + 1
    assert store.get(running).status == RUNNING  # the job itself is untouched: only queued again
