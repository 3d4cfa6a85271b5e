"""REST gateway (CONTRACT.md "REST"): routes are short and delegate to intake, store and queue."""

from __future__ import annotations

import hmac
import io
import logging
import shutil
import zipfile
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel

from model.geometry import RoomDefaults
from service import files, metrics
from service.errors import InputError
from service.intake import Radiograph, check_pair, inspect, parse
from service.queue import enqueue_reconstruction, enqueue_resend, queue_depth
from service.readiness import model_check, shared_checks
from service.settings import Settings, get_settings
from service.store import SUCCEEDED, Job, JobStore, aware, new_job_id
from service.upload import UploadTooLarge, receive_files

log = logging.getLogger(__name__)
RESEARCH_NOTICE = "PSCT output is a research reconstruction, not for diagnostic use."
JOB_ID_PATTERN = "^[0-9a-f]{32}$"
UPLOAD_FIELDS = {"pa", "lateral"}
RETRY_AFTER_S = "60"  # what a 503 asks a client to wait: a minute for an operator or a purge to free space


@lru_cache(maxsize=8)
def store_for(url: str) -> JobStore:
    return JobStore(url)


def get_store(settings: Annotated[Settings, Depends(get_settings)]) -> JobStore:
    store = store_for(settings.database)
    metrics.JOBS.counts = store.status_counts
    metrics.JOBS.queue_depth = queue_depth
    metrics.JOBS.live_workers = lambda: len(store.live_workers())
    return store


def require_api_key(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    keys = settings.api_key_list
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # Compare against every key in constant time, so timing does not reveal a prefix or which key.
    matches = [hmac.compare_digest(token.encode(), key.encode()) for key in keys]
    if scheme.lower() != "bearer" or not any(matches):
        raise HTTPException(401, "missing or wrong API key (Authorization: Bearer KEY)")


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="job id (32 hex digits)")]


class DestinationOut(BaseModel):
    destination: str
    state: str
    attempts: int
    last_status: str | None


class JobOut(BaseModel):
    id: str
    status: str
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    instances: int
    destinations: list[DestinationOut]
    source: str
    model: str | None
    geometry_notes: list[str]

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            status=job.status,
            progress=job.progress,
            created_at=aware(job.created_at),
            started_at=aware(job.started_at),
            finished_at=aware(job.finished_at),
            error=job.error,
            study_instance_uid=job.study_instance_uid,
            series_instance_uid=job.series_instance_uid,
            instances=job.instances,
            source=job.source,
            model=job.model,
            geometry_notes=job.notes,
            destinations=[
                DestinationOut(destination=d.destination, state=d.state, attempts=d.attempts, last_status=d.last_status)
                for d in job.destinations
            ],
        )


class Problem(BaseModel):
    detail: str


def _errors(*codes: int) -> dict[int | str, dict]:
    """OpenAPI entries for the error answers of an operation (JSON `{"detail": ...}`)."""
    meaning = {
        401: "missing or wrong API key", 404: "no such job", 409: "not in a state for this",
        410: "purged after PSCT_RETENTION_DAYS", 413: "a file over PSCT_MAX_UPLOAD_MB",
        422: "bad input: the detail names the problem", 503: "cannot take data now (disk); see Retry-After",
    }  # fmt: skip
    return {code: {"model": Problem, "description": meaning[code]} for code in codes}


class JobList(BaseModel):
    items: list[JobOut]
    total: int


UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["pa", "lateral"],
                "properties": {
                    "pa": {"type": "string", "format": "binary", "description": "PA or AP radiograph (DICOM)"},
                    "lateral": {"type": "string", "format": "binary", "description": "LL or RL radiograph (DICOM)"},
                },
            }
        }
    },
}


def create_app() -> FastAPI:
    app = FastAPI(
        title="PSCT",
        version="0.1.0",
        description="3D skull reconstruction from a PA + lateral radiograph pair. " + RESEARCH_NOTICE,
    )

    @app.exception_handler(InputError)
    async def _input_error(_request: Request, exc: InputError) -> JSONResponse:
        status = 413 if isinstance(exc, UploadTooLarge) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    secured = [Depends(require_api_key)]

    @app.post(
        "/reconstructions",
        status_code=202,
        response_model=JobOut,
        dependencies=secured,
        openapi_extra={"requestBody": UPLOAD_BODY},
        responses=_errors(401, 413, 422, 503),
    )
    async def submit(request: Request, response: Response, settings: SettingsDep, store: StoreDep) -> JobOut:
        low = files.low_disk(settings.home, settings.min_free_mb)
        if low is not None:
            metrics.UPLOADS.labels("out_of_resources").inc()
            raise HTTPException(503, f"cannot take uploads now: {low}", headers={"Retry-After": RETRY_AFTER_S})
        job_id = new_job_id()
        folder = files.upload_dir(settings.home, job_id)
        try:
            paths = await receive_files(
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                request.stream(),
                folder,
                UPLOAD_FIELDS,
                settings.max_upload_bytes,
            )
            pa, lateral = await run_in_threadpool(
                _inspect_pair, paths["pa"].read_bytes(), paths["lateral"].read_bytes(), settings.room
            )
        except InputError:
            metrics.UPLOADS.labels("refused").inc()
            shutil.rmtree(folder, ignore_errors=True)  # nothing was acknowledged
            raise
        except OSError as exc:  # the disk filled while streaming: nothing acknowledged, nothing left
            metrics.UPLOADS.labels("out_of_resources").inc()
            shutil.rmtree(folder, ignore_errors=True)
            log.error("upload could not be stored: %s", exc)
            detail = "cannot store the upload now (disk)"
            raise HTTPException(503, detail, headers={"Retry-After": RETRY_AFTER_S}) from None
        with store.session() as session:
            job = store.create_job(
                session,
                job_id=job_id,
                source="rest",
                study_uid=pa.study_uid,
                pa_path=str(paths["pa"].relative_to(settings.home)),
                lateral_path=str(paths["lateral"].relative_to(settings.home)),
                destinations=[str(d) for d in settings.destination_list],
                notes=pa.notes + lateral.notes,
            )
        _enqueue(enqueue_reconstruction, job.id)
        metrics.UPLOADS.labels("accepted").inc()
        response.headers["Location"] = f"/reconstructions/{job.id}"
        return JobOut.of(store.get(job.id))  # type: ignore[arg-type]

    @app.get("/reconstructions", response_model=JobList, dependencies=secured, responses=_errors(401, 422))
    def list_jobs(
        store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0)] = 0
    ) -> JobList:
        jobs, total = store.page(limit, offset)
        return JobList(items=[JobOut.of(j) for j in jobs], total=total)

    @app.get("/reconstructions/{job_id}", response_model=JobOut, dependencies=secured,
             responses=_errors(401, 404, 422))  # fmt: skip
    def get_job(job_id: JobId, store: StoreDep) -> JobOut:
        return JobOut.of(_job(store, job_id))

    @app.get(
        "/reconstructions/{job_id}/series",
        dependencies=secured,
        responses={200: {"content": {"application/zip": {}}}, **_errors(401, 404, 409, 410, 422)},
    )
    def get_series(job_id: JobId, store: StoreDep, settings: SettingsDep) -> Response:
        job = _job(store, job_id)
        paths = files.series_files(settings.home, job_id)
        if store.was_purged(job_id):
            raise HTTPException(410, f"job {job_id}: its data was purged after PSCT_RETENTION_DAYS")
        if job.status != SUCCEEDED or not paths:
            raise HTTPException(409, f"job {job_id} is {job.status}: the series is downloadable once it succeeded")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                archive.write(path, f"{job.series_instance_uid}/{path.name}")
        return Response(
            buffer.getvalue(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="psct-{job_id}.zip"'},
        )

    @app.get(
        "/reconstructions/{job_id}/preview.png",
        dependencies=secured,
        responses={200: {"content": {"image/png": {}}}, **_errors(401, 404, 409, 422)},
    )
    def get_preview(job_id: JobId, store: StoreDep, settings: SettingsDep) -> FileResponse:
        job = _job(store, job_id)
        path = files.preview_path(settings.home, job_id)
        if not path.is_file():
            raise HTTPException(409, f"job {job_id} is {job.status}: no reconstruction to preview yet")
        return FileResponse(path, media_type="image/png")

    @app.post("/reconstructions/{job_id}/resend", status_code=202, response_model=JobOut, dependencies=secured,
              responses=_errors(401, 404, 409, 422))  # fmt: skip
    def resend(job_id: JobId, store: StoreDep, settings: SettingsDep) -> JobOut:
        job = _job(store, job_id)
        if not job.series_instance_uid or not files.series_files(settings.home, job_id):
            raise HTTPException(409, f"job {job_id} is {job.status}: no series to resend yet")
        _enqueue(enqueue_resend, job_id)
        return JobOut.of(job)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "not ready: `checks` says which part failed"}})
    def readyz(store: StoreDep, settings: SettingsDep) -> JSONResponse:
        """Ready when the model file is intact, store and broker answer and the disk has room. The
        live workers are listed but do not gate it: while workers restart, uploads are still taken
        and stay queued (each worker's own /readyz reports its loaded model)."""
        checks = {"model": model_check(settings), **shared_checks(settings, store)}
        ready = all(v == "ok" for v in checks.values())
        try:
            workers = [{"worker": w.holder, "model": w.model, "provider": w.provider, "metrics_port": w.metrics_port}
                       for w in store.live_workers()]  # fmt: skip
        except Exception:  # the store is down: `checks` already says so
            workers = []
        body = {"ready": ready, "checks": checks, "workers": workers}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", dependencies=secured, response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}}, **_errors(401)})  # fmt: skip
    def get_metrics(_store: StoreDep) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def _inspect_pair(pa_bytes: bytes, lateral_bytes: bytes, room: RoomDefaults) -> tuple[Radiograph, Radiograph]:
    views = []
    for name, data in (("pa", pa_bytes), ("lateral", lateral_bytes)):
        dataset = parse(data, f"field {name!r}")
        try:
            views.append(inspect(dataset, room))
        except InputError as exc:
            raise InputError(f"field {name!r}: {exc}") from None
    pa, lateral = views
    check_pair(pa, lateral)
    return pa, lateral


def _job(store: JobStore, job_id: str) -> Job:
    job = store.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


def _enqueue(send: Callable[[str], None], job_id: str) -> None:
    # The job is committed: if the broker is down a worker's sweeper sends it later (worker/lease.py).
    try:
        send(job_id)
    except Exception:
        log.exception("could not queue job %s; it stays queued in the store", job_id)
