"""DICOM listener against DCMTK's echoscu/storescu and a pynetdicom SCU, on loopback."""

from __future__ import annotations

import copy
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE

from service.dicom_status import StoreStatus
from service.listener import Listener
from service.queue import enqueue_reconstruction
from service.settings import get_settings
from service.store import FAILED, QUEUED, JobStore
from tests.conftest import PairFiles, apply_env, free_port, require, wait_for


class Running:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
        self.monkeypatch, self.env = monkeypatch, env
        self.port = free_port()
        self.listener: Listener | None = None

    def start(self, **extra: str) -> Running:
        apply_env({**self.env, "PSCT_DICOM_PORT": str(self.port), **extra}, self.monkeypatch)
        settings = get_settings()
        self.store = JobStore(settings.database)
        self.listener = Listener(settings, self.store, enqueue_reconstruction)
        self.listener.start()
        return self

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None

    def jobs(self):  # type: ignore[no-untyped-def]
        return self.store.page(100, 0)[0]

    def queued_messages(self) -> int:
        with sqlite3.connect(Path(self.env["PSCT_HOME"]) / "queue.sqlite") as db:
            return db.execute("SELECT count(*) FROM kombu_message").fetchone()[0]


@pytest.fixture
def scp(psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    running = Running(monkeypatch, psct_env)
    yield running
    running.stop()


def storescu(port: int, *paths: Path, calling: str = "STORESCU") -> subprocess.CompletedProcess:
    return subprocess.run(
        [require("storescu"), "-aet", calling, "-aec", "PSCT", "127.0.0.1", str(port), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


def echoscu(port: int, calling: str = "ECHOSCU") -> int:
    return subprocess.run(
        [require("echoscu"), "-aet", calling, "-aec", "PSCT", "127.0.0.1", str(port)], capture_output=True, check=False
    ).returncode


def store_status(port: int, dataset) -> int:  # type: ignore[no-untyped-def]
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="PSCT")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(dataset).Status)
    finally:
        assoc.release()


def test_echo_and_a_pair_by_storescu_queue_one_job(scp: Running, pair_files: PairFiles) -> None:
    scp.start()
    assert echoscu(scp.port) == 0
    result = storescu(scp.port, pair_files.pa, pair_files.lateral)
    assert result.returncode == 0, result.stderr
    jobs = scp.jobs()
    assert len(jobs) == 1 and jobs[0].status == QUEUED and jobs[0].source == "dicom"
    assert jobs[0].study_instance_uid == pair_files.study_uid
    assert scp.queued_messages() == 1
    # The very same instances again: stored already, no second job.
    assert storescu(scp.port, pair_files.pa, pair_files.lateral).returncode == 0
    assert len(scp.jobs()) == 1


def test_a_retaken_view_of_the_same_study_makes_a_new_job(scp: Running, pair_files: PairFiles, tmp_path: Path) -> None:
    scp.start()
    storescu(scp.port, pair_files.pa, pair_files.lateral)
    retake = copy.deepcopy(dcmread(pair_files.pa))
    retake.SOPInstanceUID = retake.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    retake.save_as(tmp_path / "retake.dcm", enforce_file_format=True)
    assert storescu(scp.port, tmp_path / "retake.dcm").returncode == 0
    assert len(scp.jobs()) == 2


def test_unsupported_sop_class_is_refused_and_the_listener_goes_on(
    scp: Running, pair_files: PairFiles, tmp_path: Path
) -> None:
    scp.start()
    ct = copy.deepcopy(dcmread(pair_files.pa))
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ct.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    result = storescu(scp.port, tmp_path / "ct.dcm")
    assert result.returncode != 0 or "fail" in (result.stdout + result.stderr).lower()
    assert not list((Path(scp.env["PSCT_HOME"]) / "inbox").rglob("*.dcm"))
    assert echoscu(scp.port) == 0


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"ImagerPixelSpacing": ["0", "0"]}, "ImagerPixelSpacing"),
        ({"ViewPosition": "", "ViewCodeSequence": None, "SeriesDescription": "skull"}, "view unknown"),
        ({"PixelData": None}, "no pixel data"),
    ],
)
def test_unusable_instances_get_a_refusing_status_and_are_not_kept(
    scp: Running, pair_files: PairFiles, edit: dict, words: str
) -> None:
    scp.start()
    ds = copy.deepcopy(dcmread(pair_files.pa))
    for keyword, value in edit.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    assert store_status(scp.port, ds) == StoreStatus.CANNOT_UNDERSTAND
    assert not list((Path(scp.env["PSCT_HOME"]) / "inbox").rglob("*.dcm"))
    assert echoscu(scp.port) == 0


def test_below_the_disk_watermark_stores_get_out_of_resources_and_nothing_is_kept(
    scp: Running, pair_files: PairFiles
) -> None:
    scp.start(PSCT_MIN_FREE_MB="1e12")  # above any real disk's free space
    assert store_status(scp.port, dcmread(pair_files.pa)) == StoreStatus.OUT_OF_RESOURCES
    assert not list((Path(scp.env["PSCT_HOME"]) / "inbox").rglob("*.dcm")) and scp.jobs() == []
    scp.stop()
    scp.start(PSCT_MIN_FREE_MB="0")  # space again: the sender's retry goes through
    for path in (pair_files.pa, pair_files.lateral):
        assert store_status(scp.port, dcmread(path)) == StoreStatus.SUCCESS
    assert len(scp.jobs()) == 1


def test_only_allowed_calling_ae_titles_associate(scp: Running, pair_files: PairFiles) -> None:
    scp.start(PSCT_ALLOWED_AES="XRAY1,XRAY2")
    assert echoscu(scp.port, calling="OTHER") != 0
    assert echoscu(scp.port, calling="xray1") != 0  # exact, case-sensitive
    assert echoscu(scp.port, calling="XRAY2") == 0
    assert storescu(scp.port, pair_files.pa, calling="OTHER").returncode != 0
    assert not scp.jobs()


def test_only_allowed_hosts_connect(scp: Running) -> None:
    scp.start(PSCT_ALLOWED_HOSTS="10.0.0.0/8")
    assert echoscu(scp.port) != 0
    scp.stop()
    scp.start(PSCT_ALLOWED_HOSTS="127.0.0.0/8")
    assert echoscu(scp.port) == 0


def test_a_half_pair_fails_after_the_timeout_naming_the_missing_view(scp: Running, pair_files: PairFiles) -> None:
    scp.start(PSCT_PAIR_TIMEOUT_S="1")
    assert storescu(scp.port, pair_files.pa).returncode == 0
    job = wait_for(lambda: next(iter(scp.jobs()), None), 15, "the pair-timeout job")
    assert job.status == FAILED and "lateral (LL/RL) view missing" in job.error
    assert pair_files.study_uid in job.error


def test_pairing_state_survives_a_restart(scp: Running, pair_files: PairFiles) -> None:
    scp.start()
    assert storescu(scp.port, pair_files.pa).returncode == 0
    scp.stop()
    time.sleep(0.2)
    scp.start()
    assert storescu(scp.port, pair_files.lateral).returncode == 0
    jobs = scp.jobs()
    assert len(jobs) == 1 and jobs[0].status == QUEUED
