"""No patient names or IDs in logs (issue 7): a pair with a distinctive name and ID goes through the
listener, the REST gateway (accepted and refused) and the worker; none of its identity is logged."""

from __future__ import annotations

import copy
import logging

import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread

from service.api import create_app
from service.settings import PHYSICS_BASELINE, get_settings
from service.store import JobStore
from tests.conftest import PairFiles, apply_env
from tests.service.test_api import post, to_bytes
from tests.service.test_listener import Running, store_status
from worker.job import run_reconstruction

NAME, PATIENT_ID = "Zyxwvutsrq^Secretname", "PID-98765432"


def test_patient_identity_never_reaches_the_logs(
    pair_files: PairFiles, psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the level psct runs at
    for name in ("service", "worker", "psct", "model"):
        caplog.set_level(logging.DEBUG, logger=name)  # and everything of ours
    apply_env({"PSCT_MODEL_PATH": str(PHYSICS_BASELINE)}, monkeypatch)
    views = []
    for path in (pair_files.pa, pair_files.lateral):
        ds = copy.deepcopy(dcmread(path))
        ds.PatientName, ds.PatientID = NAME, PATIENT_ID
        views.append(ds)
    scp = Running(monkeypatch, psct_env).start(PSCT_MODEL_PATH=str(PHYSICS_BASELINE))
    try:
        assert [store_status(scp.port, ds) for ds in views] == [0, 0]
    finally:
        scp.stop()
    client = TestClient(create_app(), raise_server_exceptions=False)
    accepted = post(client, to_bytes(views[0]), to_bytes(views[1]))
    assert accepted.status_code == 202
    other = copy.deepcopy(views[1])
    other.PatientID = "PID-11112222"
    assert post(client, to_bytes(views[0]), to_bytes(other)).status_code == 422  # two patients: refused
    store = JobStore(get_settings().database)
    for job in store.page(10, 0)[0]:
        run_reconstruction(job.id, store, get_settings())
    assert len(caplog.records) > 0
    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (NAME, "Zyxwvutsrq", "Secretname", PATIENT_ID, "PID-11112222"):
        assert secret not in text
