"""Pairing of received instances by study and view, and the pair timeout.

A study's newest PA-family and newest lateral-family instances make a job as soon as both exist.
A later instance of the same study pairs with the newest instance of the other view, so a retaken
view makes a new job; an instance whose SOP Instance UID is already known makes none.
State lives in the job store, so pairing and the timeout clock survive restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from service.store import FAILED, Instance, JobStore, aware, utcnow

FAMILY_NAMES = {"pa": "PA/AP", "lateral": "lateral (LL/RL)"}


@dataclass(frozen=True)
class Arrival:
    sop_uid: str
    study_uid: str
    family: str
    path: str  # relative to PSCT_HOME
    calling_ae: str | None


def register(store: JobStore, arrival: Arrival, destinations: list[str]) -> str | None:
    """Record the instance; returns the id of the job it completes (to enqueue), else None."""
    with store.session() as session:
        if session.get(Instance, arrival.sop_uid) is not None:
            return None  # the very same instance again: already stored, already counted
        instance = Instance(
            sop_instance_uid=arrival.sop_uid,
            study_instance_uid=arrival.study_uid,
            family=arrival.family,
            path=arrival.path,
            received_at=utcnow(),
            calling_ae=arrival.calling_ae,
        )
        session.add(instance)
        partner = session.scalars(
            select(Instance)
            .where(Instance.study_instance_uid == arrival.study_uid, Instance.family != arrival.family)
            .order_by(Instance.received_at.desc())
            .limit(1)
        ).first()
        if partner is None:
            return None
        pa, lateral = (instance, partner) if arrival.family == "pa" else (partner, instance)
        job = store.create_job(
            session,
            source="dicom",
            study_uid=arrival.study_uid,
            pa_path=pa.path,
            lateral_path=lateral.path,
            destinations=destinations,
            notes=[],
        )
        instance.job_id = job.id
        partner.job_id = partner.job_id or job.id
        return job.id


def expire_half_pairs(store: JobStore, timeout_s: float) -> list[str]:
    """Turn studies still missing a view `timeout_s` after their first instance into failed jobs."""
    failed = []
    cutoff = utcnow() - timedelta(seconds=timeout_s)
    with store.session() as session:
        waiting = session.scalars(select(Instance).where(Instance.job_id.is_(None))).all()
        studies: dict[str, list[Instance]] = {}
        for instance in waiting:
            studies.setdefault(instance.study_instance_uid, []).append(instance)
        for study_uid, instances in studies.items():
            first = min(aware(i.received_at) for i in instances)  # type: ignore[type-var]
            if first is None or first > cutoff:
                continue
            present = {i.family for i in instances}
            if len(present) != 1:
                continue  # cannot happen: register() pairs as soon as both exist
            have = present.pop()
            missing = "lateral" if have == "pa" else "pa"
            newest = max(instances, key=lambda i: aware(i.received_at))  # type: ignore[arg-type,return-value]
            message = (
                f"{FAMILY_NAMES[missing]} view missing: study {study_uid} received {len(instances)} "
                f"{FAMILY_NAMES[have]} instance(s), the first at {first:%Y-%m-%d %H:%M:%S} UTC, and no "
                f"{FAMILY_NAMES[missing]} view within {timeout_s:g} s"
            )
            job = store.create_job(
                session,
                source="dicom",
                study_uid=study_uid,
                pa_path=newest.path if have == "pa" else "",
                lateral_path=newest.path if have != "pa" else "",
                destinations=[],
                notes=[],
                status=FAILED,
                error=message,
            )
            for instance in instances:
                instance.job_id = job.id
            failed.append(job.id)
    return failed
