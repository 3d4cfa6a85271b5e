"""REST gateway: accepted pairs become queued jobs; bad input is a 4xx naming the problem, never a 5xx."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread

from service.api import create_app
from service.store import JobStore
from tests.conftest import PairFiles, apply_env


@pytest.fixture
def client(psct_env: dict[str, str]) -> TestClient:
    return TestClient(create_app(), raise_server_exceptions=False)


def post(client: TestClient, pa: bytes, lateral: bytes, headers: dict | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        "/reconstructions",
        files={"pa": ("pa.dcm", pa, "application/dicom"), "lateral": ("lat.dcm", lateral, "application/dicom")},
        headers=headers or {},
    )


def to_bytes(ds) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def edited(path: Path, **values) -> bytes:  # type: ignore[no-untyped-def]
    ds = copy.deepcopy(dcmread(path))
    for keyword, value in values.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return to_bytes(ds)


def test_a_pair_becomes_a_queued_job_visible_in_the_list(
    client: TestClient, pair_files: PairFiles, psct_env: dict[str, str]
) -> None:
    answer = post(client, pair_files.pa.read_bytes(), pair_files.lateral.read_bytes())
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"/reconstructions/{job['id']}"
    assert job["status"] == "queued" and job["study_instance_uid"] == pair_files.study_uid
    assert client.get(f"/reconstructions/{job['id']}").json()["id"] == job["id"]
    listing = client.get("/reconstructions").json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == job["id"]
    # The upload is on disk before the 202 (durable), under PSCT_HOME.
    stored = JobStore(f"sqlite:///{psct_env['PSCT_HOME']}/psct.sqlite").get(job["id"])
    assert (Path(psct_env["PSCT_HOME"]) / str(stored.pa_path)).read_bytes() == pair_files.pa.read_bytes()
    # Every post is a new job.
    assert post(client, pair_files.pa.read_bytes(), pair_files.lateral.read_bytes()).json()["id"] != job["id"]
    assert client.get("/reconstructions?limit=1&offset=1").json()["items"][0]["id"] == job["id"]


def test_unfinished_jobs_answer_409_for_series_preview_and_resend(client: TestClient, pair_files: PairFiles) -> None:
    job = post(client, pair_files.pa.read_bytes(), pair_files.lateral.read_bytes()).json()
    for method, path in (("get", "series"), ("get", "preview.png"), ("post", "resend")):
        answer = getattr(client, method)(f"/reconstructions/{job['id']}/{path}")
        assert answer.status_code == 409 and "queued" in answer.json()["detail"]


def _truncated(pair: PairFiles) -> bytes:
    return pair.pa.read_bytes()[:2000]


BAD_INPUTS = {
    "non-DICOM": (lambda p: b"%PDF-1.4 not an image" * 10, lambda p: p.lateral.read_bytes(), "not a readable DICOM"),
    "truncated": (_truncated, lambda p: p.lateral.read_bytes(), "field 'pa'"),
    "no pixel data": (lambda p: edited(p.pa, PixelData=None), lambda p: p.lateral.read_bytes(), "no pixel data"),
    "two PAs": (lambda p: p.pa.read_bytes(), lambda p: edited(p.pa, SOPInstanceUID="1.2.3.4"), "holds a PA view"),
    "two patients": (lambda p: p.pa.read_bytes(), lambda p: edited(p.lateral, PatientID="OTHER"), "different patients"),
    "zero pixel spacing": (
        lambda p: edited(p.pa, ImagerPixelSpacing=["0", "0"]),
        lambda p: p.lateral.read_bytes(),
        "ImagerPixelSpacing",
    ),
    "negative SID": (
        lambda p: edited(p.pa, DistanceSourceToDetector="-1000"),
        lambda p: p.lateral.read_bytes(),
        "DistanceSourceToDetector",
    ),
    "unknown view": (
        lambda p: edited(p.pa, ViewPosition="", ViewCodeSequence=None, SeriesDescription="skull"),
        lambda p: p.lateral.read_bytes(),
        "view unknown",
    ),
    "invalid UID": (
        lambda p: edited(p.pa, SOPInstanceUID="1.2.abc"),
        lambda p: p.lateral.read_bytes(),
        "valid DICOM UID",
    ),
    "CT instead of DX": (
        lambda p: edited(p.pa, SOPClassUID="1.2.840.10008.5.1.4.1.1.2"),
        lambda p: p.lateral.read_bytes(),
        "not CR or DX",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_4xx_naming_the_problem(
    client: TestClient, pair_files: PairFiles, case: str, psct_env: dict[str, str]
) -> None:
    make_pa, make_lateral, words = BAD_INPUTS[case]
    answer = post(client, make_pa(pair_files), make_lateral(pair_files))
    assert 400 <= answer.status_code < 500, answer.text
    assert words in answer.json()["detail"]
    assert client.get("/reconstructions").json()["total"] == 0  # nothing half-acknowledged
    assert not list((Path(psct_env["PSCT_HOME"]) / "uploads").glob("*/*"))
    assert client.get("/healthz").status_code == 200


def test_missing_field_and_wrong_content_type(client: TestClient, pair_files: PairFiles) -> None:
    answer = client.post("/reconstructions", files={"pa": ("pa.dcm", pair_files.pa.read_bytes())})
    assert answer.status_code == 422 and "lateral" in answer.json()["detail"]
    answer = client.post("/reconstructions", content=b"{}", headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "multipart/form-data" in answer.json()["detail"]


def test_over_the_size_limit_is_413(
    pair_files: PairFiles, psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env({"PSCT_MAX_UPLOAD_MB": "0.1"}, monkeypatch)  # the simulated files are ~0.5 MB
    client = TestClient(create_app(), raise_server_exceptions=False)
    answer = post(client, pair_files.pa.read_bytes(), pair_files.lateral.read_bytes())
    assert answer.status_code == 413 and "limit" in answer.json()["detail"]


def test_invalid_job_ids_are_refused_and_unknown_ones_are_404(client: TestClient) -> None:
    assert client.get("/reconstructions/..%2F..%2Fetc").status_code in (404, 422)
    assert client.get("/reconstructions/not-hex").status_code == 422
    assert client.get(f"/reconstructions/{'0' * 32}").status_code == 404
    assert client.get("/reconstructions?limit=501").status_code == 422


def test_api_keys_guard_everything_but_health(
    pair_files: PairFiles, psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env({"PSCT_API_KEYS": "alpha,beta"}, monkeypatch)
    client = TestClient(create_app(), raise_server_exceptions=False)
    assert client.get("/reconstructions").status_code == 401
    assert client.get("/reconstructions", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/reconstructions", headers={"Authorization": "Bearer beta"}).status_code == 200
    assert post(client, pair_files.pa.read_bytes(), pair_files.lateral.read_bytes()).status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)


def test_readiness_checks_model_store_and_queue(client: TestClient) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"] == {"model": "ok", "store": "ok", "queue": "ok", "disk": "ok"}


def test_below_the_disk_watermark_uploads_get_503_and_readiness_fails(
    psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, pair_files: PairFiles
) -> None:
    """A watermark above any real disk's free space: the refusal path, exactly as on a full disk."""
    apply_env({"PSCT_MIN_FREE_MB": "1e12"}, monkeypatch)
    client = TestClient(create_app(), raise_server_exceptions=False)
    answer = post(client, pair_files.pa.read_bytes(), pair_files.lateral.read_bytes())
    assert answer.status_code == 503 and "PSCT_MIN_FREE_MB" in answer.json()["detail"]
    assert int(answer.headers["retry-after"]) > 0
    assert not list(Path(psct_env["PSCT_HOME"]).rglob("*.dcm")) and client.get("/reconstructions").json()["total"] == 0
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["disk"].startswith("failed")


def test_broken_model_file_makes_the_service_unready(
    psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from service.settings import DEFAULT_MODEL

    fake = tmp_path / "model.onnx"
    fake.write_bytes(DEFAULT_MODEL.read_bytes() + b"tampered")
    fake.with_suffix(".json").write_text(DEFAULT_MODEL.with_suffix(".json").read_text())
    apply_env({"PSCT_MODEL_PATH": str(fake)}, monkeypatch)
    answer = TestClient(create_app()).get("/readyz")
    assert answer.status_code == 503 and "sha256" in answer.json()["checks"]["model"]


def test_openapi_describes_every_contract_call(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/reconstructions",
        "/reconstructions/{job_id}",
        "/reconstructions/{job_id}/series",
        "/reconstructions/{job_id}/preview.png",
        "/reconstructions/{job_id}/resend",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths
    body = paths["/reconstructions"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(body["required"]) == {"pa", "lateral"}
    assert client.get("/metrics").text.count("psct_jobs") >= 1
