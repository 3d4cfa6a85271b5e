"""Job store: jobs, their destinations and every received instance (SQLAlchemy; SQLite or PostgreSQL).

The store is the truth about work: the queue only carries job ids, so a lost queue message can be
re-sent from here (`jobs_to_resume`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Integer,
    Select,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
)

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
PENDING, SENT = "pending", "sent"
# SQLite waits this long for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    source: Mapped[str] = mapped_column(String(16))  # rest | dicom
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    series_instance_uid: Mapped[str | None] = mapped_column(String(64))
    instances: Mapped[int] = mapped_column(Integer, default=0)
    pa_path: Mapped[str | None] = mapped_column(Text)  # relative to PSCT_HOME
    lateral_path: Mapped[str | None] = mapped_column(Text)
    notes_json: Mapped[str] = mapped_column(Text, default="[]")  # defaults and approximations used
    model: Mapped[str | None] = mapped_column(String(128))
    destinations: Mapped[list[Delivery]] = relationship(
        back_populates="job", order_by="Delivery.destination", cascade="all, delete-orphan"
    )

    @property
    def notes(self) -> list[str]:
        return json.loads(self.notes_json or "[]")


class Delivery(Base):
    __tablename__ = "deliveries"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    destination: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[str | None] = mapped_column(Text)
    job: Mapped[Job] = relationship(back_populates="destinations")


class Instance(Base):
    """Every received radiograph; `job_id` is set once it belongs to a job (paired or timed out)."""

    __tablename__ = "instances"

    sop_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    family: Mapped[str] = mapped_column(String(8))  # pa | lateral
    path: Mapped[str] = mapped_column(Text)  # relative to PSCT_HOME
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), index=True)


class AuditEvent(Base):
    """What was done to data, for the operator's record (no patient names or IDs in `detail`)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    event: Mapped[str] = mapped_column(String(32), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


# Audit events. `detail` is JSON; it never holds patient names or IDs (UIDs, AE titles and peer
# addresses are not patient data).
PURGED = "purged"  # a job's received instances and results were deleted (retention)
ASSOCIATION = "association"  # a DICOM association accepted or refused: calling AE, peer, reason
JOB_CREATED = "job_created"  # a job entered the store: source, study, initial status
JOB_FINISHED = "job_finished"  # a job ended: status, error, series
EXPORT = "export"  # one C-STORE delivery attempt of a series: destination, outcome, status


class Lease(Base):
    """A worker's claim on the job it runs, renewed while it runs (worker/lease.py): a lease that
    stops being renewed means its worker died, and the job is queued again."""

    __tablename__ = "leases"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))  # host:pid of the worker
    renewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


HEARTBEAT_S = 10.0  # how often a worker records that it is alive (worker/startup.py)
WORKER_STALE_S = 3 * HEARTBEAT_S  # a worker unheard of this long counts as gone (two beats missed)


class Worker(Base):
    """A worker process's heartbeat: what it loaded and when it was last seen (worker/startup.py)."""

    __tablename__ = "workers"

    holder: Mapped[str] = mapped_column(String(64), primary_key=True)  # host:pid
    model: Mapped[str] = mapped_column(String(128))  # sidecar name and version
    provider: Mapped[str] = mapped_column(String(64))  # ONNX Runtime execution provider in use
    metrics_port: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored here is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not only kill -9
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # Writers serialise at BEGIN, so pairing's read-then-write cannot race another process.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    database = make_url(url).database
    if url.startswith("sqlite") and database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    from service.migrate import upgrade  # the migrations import this module's models

    upgrade(engine)
    return engine


class JobStore:
    def __init__(self, url: str) -> None:
        self.engine = engine_for(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    # -- jobs ------------------------------------------------------------------------------
    def create_job(
        self,
        session: Session,
        *,
        source: str,
        study_uid: str,
        pa_path: str,
        lateral_path: str,
        destinations: list[str],
        notes: list[str],
        status: str = QUEUED,
        error: str | None = None,
        job_id: str | None = None,
    ) -> Job:
        now = utcnow()
        job = Job(
            id=job_id or new_job_id(),
            status=status,
            progress=0.0,
            source=source,
            created_at=now,
            finished_at=now if status == FAILED else None,
            error=error,
            study_instance_uid=study_uid,
            pa_path=pa_path,
            lateral_path=lateral_path,
            notes_json=json.dumps(notes),
            instances=0,
        )
        job.destinations = [Delivery(destination=d, state=PENDING, attempts=0) for d in destinations]
        session.add(job)
        detail = {"source": source, "study_instance_uid": study_uid, "status": status, "error": error}
        session.add(AuditEvent(at=now, event=JOB_CREATED, job_id=job.id, detail=json.dumps(detail)))
        session.flush()
        return job

    def get(self, job_id: str) -> Job | None:
        with self.session() as session:
            return session.scalar(_job_query().where(Job.id == job_id))

    def page(self, limit: int, offset: int) -> tuple[list[Job], int]:
        with self.session() as session:
            total = session.scalar(select(func.count()).select_from(Job)) or 0
            rows = session.scalars(
                _job_query().order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
            ).unique()
            return list(rows), total

    def update(self, job_id: str, **values: object) -> None:
        with self.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise KeyError(job_id)
            for key, value in values.items():
                setattr(job, key, value)

    def set_delivery(self, job_id: str, destination: str, **values: object) -> None:
        with self.session() as session:
            delivery = session.get(Delivery, (job_id, destination))
            if delivery is None:
                delivery = Delivery(job_id=job_id, destination=destination, state=PENDING, attempts=0)
                session.add(delivery)
            for key, value in values.items():
                setattr(delivery, key, value)

    def jobs_to_resume(self) -> list[str]:
        """Jobs a crash may have left without a live queue message."""
        with self.session() as session:
            return list(session.scalars(select(Job.id).where(Job.status.in_([QUEUED, RUNNING]))))

    # -- retention and audit ------------------------------------------------------------------
    def audit(self, event: str, job_id: str | None, detail: str | dict[str, object]) -> None:
        text_detail = detail if isinstance(detail, str) else json.dumps(detail)
        with self.session() as session:
            session.add(AuditEvent(at=utcnow(), event=event, job_id=job_id, detail=text_detail))

    def audit_events(self, event: str | None = None) -> list[AuditEvent]:
        with self.session() as session:
            query = select(AuditEvent).order_by(AuditEvent.id)
            return list(session.scalars(query if event is None else query.where(AuditEvent.event == event)))

    def finished_before(self, cutoff: datetime) -> list[Job]:
        """Finished jobs older than `cutoff` whose data is still kept (no purge recorded)."""
        purged = select(AuditEvent.job_id).where(AuditEvent.event == PURGED, AuditEvent.job_id.is_not(None))
        with self.session() as session:
            query = select(Job).where(
                Job.status.in_([SUCCEEDED, FAILED]), Job.finished_at < cutoff, Job.id.not_in(purged)
            )
            return list(session.scalars(query))

    def instance_paths(self, job_id: str) -> list[str]:
        with self.session() as session:
            return list(session.scalars(select(Instance.path).where(Instance.job_id == job_id)))

    def was_purged(self, job_id: str) -> bool:
        with self.session() as session:
            query = select(AuditEvent.id).where(AuditEvent.event == PURGED, AuditEvent.job_id == job_id)
            return session.scalar(query.limit(1)) is not None

    # -- leases ---------------------------------------------------------------------------------
    def take_lease(self, job_id: str, holder: str, stale_before: datetime) -> bool:
        """Take `job_id`'s lease unless another holder renewed it since `stale_before` (that worker
        runs the job: a second message for it is a duplicate). True when the lease is ours."""
        try:
            with self.session() as session:
                lease = session.get(Lease, job_id)
                if lease is None:
                    session.add(Lease(job_id=job_id, holder=holder, renewed_at=utcnow()))
                elif lease.holder == holder or aware(lease.renewed_at) < stale_before:  # type: ignore[operator]
                    lease.holder, lease.renewed_at = holder, utcnow()
                else:
                    return False
        except IntegrityError:  # another worker inserted it first (PostgreSQL; SQLite serialises)
            return False
        return True

    def unleased_jobs(self, created_before: datetime) -> list[str]:
        """Unfinished jobs older than `created_before` that no worker holds: their message is
        waiting in the queue, or it was never sent (its sender died) or was lost with a worker."""
        held = select(Lease.job_id).where(Lease.job_id == Job.id).exists()
        query = select(Job.id).where(Job.status.in_([QUEUED, RUNNING]), Job.created_at < created_before, ~held)
        with self.session() as session:
            return list(session.scalars(query.order_by(Job.created_at)))

    def drop_lease(self, job_id: str, holder: str) -> None:
        with self.session() as session:
            session.execute(delete(Lease).where(Lease.job_id == job_id, Lease.holder == holder))

    def claim_expired_leases(self, cutoff: datetime) -> list[str]:
        """Jobs whose lease was last renewed before `cutoff`, each returned to one caller only (the
        delete that wins is the claim), so concurrent sweepers requeue a job once."""
        claimed = []
        with self.session() as session:
            stale = list(session.scalars(select(Lease.job_id).where(Lease.renewed_at < cutoff)))
        for job_id in stale:
            with self.session() as session:
                gone = session.execute(delete(Lease).where(Lease.job_id == job_id, Lease.renewed_at < cutoff))
                if gone.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(job_id)
        return claimed

    # -- worker heartbeats ------------------------------------------------------------------------
    def beat(self, holder: str, model: str, provider: str, metrics_port: int | None, started_at: datetime) -> None:
        with self.session() as session:
            worker = session.get(Worker, holder)
            if worker is None:
                worker = Worker(holder=holder, started_at=started_at)
                session.add(worker)
            worker.model, worker.provider, worker.metrics_port, worker.seen_at = model, provider, metrics_port, utcnow()

    def live_workers(self) -> list[Worker]:
        """Workers heard from within WORKER_STALE_S."""
        cutoff = utcnow() - timedelta(seconds=WORKER_STALE_S)
        with self.session() as session:
            return list(session.scalars(select(Worker).where(Worker.seen_at >= cutoff).order_by(Worker.holder)))

    def forget_worker(self, holder: str) -> None:
        with self.session() as session:
            session.execute(delete(Worker).where(Worker.holder == holder))

    def status_counts(self) -> dict[str, int]:
        with self.session() as session:
            rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            return {status: count for status, count in rows}


def _job_query() -> Select[Job]:
    return select(Job).options(selectinload(Job.destinations))
