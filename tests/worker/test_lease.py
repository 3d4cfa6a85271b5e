"""Job leases: held and renewed while a job runs, claimed once when their worker stops renewing;
duplicate messages dropped; jobs left without a message sent again."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from service.queue import enqueue_reconstruction
from service.settings import get_settings
from service.store import QUEUED, RUNNING, SUCCEEDED, JobStore, Lease, utcnow
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
        store.take_lease(job_id, "dead-host:1", utcnow())  # taken, then never renewed: its worker was killed
    time.sleep(0.3)
    before = _queued(psct_env["PSCT_HOME"]) if (Path(psct_env["PSCT_HOME"]) / "queue.sqlite").exists() else 0
    assert lease.sweep(store, settings) == [running]  # the finished job is not run again
    assert lease.sweep(store, settings) == []  # claimed once
    assert _queued(psct_env["PSCT_HOME"]) == before + 1
    assert store.get(running).status == RUNNING  # the job itself is untouched: only queued again


def test_a_job_committed_without_its_message_is_queued_once_the_queue_is_empty(
    psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a gateway or listener killed between commit and send leaves behind (issue 6's faults)."""
    apply_env({"PSCT_LEASE_S": "0.3"}, monkeypatch)
    settings = get_settings()
    store = JobStore(settings.database)
    orphan = _job(store, QUEUED)  # committed; its sender died before enqueue_reconstruction
    assert lease.sweep(store, settings) == []  # too young: its sender may be sending it right now
    time.sleep(0.4)
    waiting = _job(store, QUEUED)
    enqueue_reconstruction(waiting)  # a message still waits in the queue: nothing is sent again
    assert lease.sweep(store, settings) == []
    _drain(psct_env["PSCT_HOME"])  # the waiting message was taken; its worker holds the lease
    store.take_lease(waiting, "live-host:1", utcnow())
    assert lease.sweep(store, settings) == [orphan]
    assert _queued(psct_env["PSCT_HOME"]) == 1


def test_a_duplicate_message_leaves_a_job_another_worker_holds(
    psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env({"PSCT_LEASE_S": "5"}, monkeypatch)
    settings = get_settings()
    store = JobStore(settings.database)
    job_id = _job(store, RUNNING)
    store.take_lease(job_id, "other-host:1", utcnow())
    with lease.held(store, job_id, settings) as ours:
        assert not ours
    assert store.claim_expired_leases(utcnow() + timedelta(days=1)) == [job_id]  # still there, theirs
    store.take_lease(job_id, "dead-host:1", utcnow())
    apply_env({"PSCT_LEASE_S": "0.1"}, monkeypatch)
    time.sleep(0.2)
    with lease.held(store, job_id, get_settings()) as ours:  # a stale lease is taken over
        assert ours


def test_one_of_two_workers_takes_a_free_lease(postgres_url: str) -> None:
    """PostgreSQL does not serialise the two inserts as SQLite's BEGIN IMMEDIATE does."""
    store = JobStore(postgres_url)
    job_id = _job(store, QUEUED)
    barrier = threading.Barrier(2)

    def take(name: str) -> bool:
        barrier.wait()
        return store.take_lease(job_id, name, utcnow() - timedelta(seconds=60))

    with ThreadPoolExecutor(2) as pool:
        taken = list(pool.map(take, ["a:1", "b:2"]))
    assert sorted(taken) == [False, True]


def _drain(home: str) -> None:
    with sqlite3.connect(Path(home) / "queue.sqlite") as db:
        db.execute("DELETE FROM kombu_message")


def test_after_a_stall_the_old_holder_leaves_the_new_holders_lease(
    psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env({"PSCT_LEASE_S": "2"}, monkeypatch)
    settings = get_settings()
    store = JobStore(settings.database)
    job_id = _job(store, RUNNING)
    with lease.held(store, job_id, settings) as ours:
        assert ours
        assert store.claim_expired_leases(utcnow() + timedelta(days=1)) == [job_id]  # we stalled: swept
        assert store.take_lease(job_id, "new-host:2", utcnow())  # and another worker took the job
        time.sleep(1.2)  # two renewals of ours, well inside the new holder's lease
    with store.session() as session:
        assert session.get(Lease, job_id).holder == "new-host:2"  # neither renewed over nor dropped
