"""The scaled deployment on one machine, for tests/test_scaled.py and bench/scale.py: a real
redis-server, a real PostgreSQL database, `psct gateway`, `psct scp` and N `psct worker` processes
sharing one PSCT_HOME, delivering to DCMTK's storescp. Each process logs JSON to its own file."""

from __future__ import annotations

import copy
import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE

from tests.conftest import PSCT, REPO, START_TIMEOUT_S, free_port, port_open, require, wait_for

RECEIVER_AE = "SCALERX"
REDIS_ARGS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]


def new_pair(pa_path: Path, lateral_path: Path, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """A pair as a new study: new study, series and instance UIDs, same pixels."""
    study = generate_uid(entropy_srcs=[str(rng.integers(2**62))])
    views = []
    for path in (pa_path, lateral_path):
        ds = copy.deepcopy(dcmread(path))
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(rng.integers(2**62))])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
            entropy_srcs=[str(rng.integers(2**62))]
        )
        views.append(ds)
    return views[0], views[1]


def file_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def series_by_study(folder: Path) -> dict[str, dict[str, int]]:
    """{study: {series: instances}} of everything a receiver's folder holds."""
    found: dict[str, dict[str, int]] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            ds = dcmread(path, stop_before_pixels=True)
            series = found.setdefault(str(ds.StudyInstanceUID), {})
            series[str(ds.SeriesInstanceUID)] = series.get(str(ds.SeriesInstanceUID), 0) + 1
    return found


def metrics_of(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text endpoint."""
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum of `name` over the samples whose labels include `labels`."""
    return sum(v for (n, lab), v in samples.items() if n == name and set(labels.items()) <= set(lab))


@dataclass
class Cluster:
    folder: Path
    database_url: str
    workers: int
    model_path: str | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    scp_metrics_port: int = field(default_factory=free_port)
    worker_metrics_ports: list[int] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def received(self) -> Path:
        return self.folder / "received"

    def log(self, name: str) -> Path:
        return self.folder / "logs" / f"{name}.jsonl"

    def start(self) -> None:
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        redis_port, receiver_port = free_port(), free_port()
        self._spawn("redis", [require("redis-server"), "--port", str(redis_port), *REDIS_ARGS, "--dir",
                              str(self.folder)])  # fmt: skip
        self._spawn("storescp", [require("storescp"), "-aet", RECEIVER_AE, "-od", str(self.received),
                                 str(receiver_port)], prepare=lambda: self.received.mkdir(exist_ok=True))  # fmt: skip
        wait_for(lambda: port_open(redis_port) and port_open(receiver_port), START_TIMEOUT_S, "redis and storescp")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PSCT_")}
        env.update(
            PSCT_HOME=str(self.folder / "home"), PSCT_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
            PSCT_DATABASE_URL=self.database_url, PSCT_HTTP_PORT=str(self.http_port),
            PSCT_DICOM_PORT=str(self.dicom_port), PSCT_DESTINATIONS=f"{RECEIVER_AE}@127.0.0.1:{receiver_port}",
            PSCT_LOG_FORMAT="json",
        )  # fmt: skip
        if self.model_path:
            env["PSCT_MODEL_PATH"] = self.model_path
        self._spawn("gateway", [*PSCT, "gateway"], env)
        self._spawn("scp", [*PSCT, "scp", "--metrics-port", str(self.scp_metrics_port)], env)
        self.worker_metrics_ports = [free_port() for _ in range(self.workers)]
        for index, port in enumerate(self.worker_metrics_ports):
            self._spawn(f"worker{index}", [*PSCT, "worker", "--metrics-port", str(port)], env)
        urls = [f"{self.base}/readyz", *(f"http://127.0.0.1:{p}/readyz" for p in self.worker_metrics_ports)]
        wait_for(lambda: all(_ready(u) for u in urls) and port_open(self.dicom_port), START_TIMEOUT_S * 2,
                 "gateway, listener and every worker ready")  # fmt: skip

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, prepare=None) -> None:  # type: ignore[no-untyped-def]
        if prepare:
            prepare()
        with open(self.log(name), "wb") as log:
            self.processes[name] = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                                    start_new_session=True)  # fmt: skip

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(35)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def check_alive(self) -> None:
        """Fail at once (not at a timeout) when a process of the deployment died."""
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        assert not dead, f"exited: {dead}; logs in {self.folder / 'logs'}"

    def send_by_dicom(self, pa: Dataset, lateral: Dataset) -> None:
        """Both views in one association, as a PACS forwarding a study does."""
        ae = AE(ae_title="SCALESCU")
        for ds in (pa, lateral):
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", self.dicom_port, ae_title="PSCT")
        assert assoc.is_established, "the listener refused the association"
        try:
            for ds in (pa, lateral):
                reply = assoc.send_c_store(ds)
                assert "Status" in reply and int(reply.Status) == 0, reply
        finally:
            assoc.release()

    def send_by_rest(self, pa: Dataset, lateral: Dataset) -> str:
        files = {"pa": ("pa.dcm", file_bytes(pa)), "lateral": ("lateral.dcm", file_bytes(lateral))}
        answer = httpx.post(f"{self.base}/reconstructions", files=files, timeout=60)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def jobs(self) -> list[dict]:
        return list(httpx.get(f"{self.base}/reconstructions", params={"limit": 500}, timeout=30).json()["items"])


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running(folder: Path, database_url: str, workers: int, model_path: str | None = None) -> Iterator[Cluster]:
    cluster = Cluster(folder, database_url, workers, model_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def submit_all(cluster: Cluster, pairs: list[tuple[Dataset, Dataset]], by_dicom: int) -> float:
    """Send every pair at once (the first `by_dicom` through the listener, the rest by REST); returns
    the time.time() at which the first was sent."""
    errors: list[BaseException] = []

    def send(index: int, pa: Dataset, lateral: Dataset) -> None:
        try:
            (cluster.send_by_dicom if index < by_dicom else cluster.send_by_rest)(pa, lateral)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i, pa, lat)) for i, (pa, lat) in enumerate(pairs)]
    start = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return start
