"""Fault injection (issue 7): kill -9 at seeded random moments while pairs flow in by DICOM and REST.

Victims: `psct serve` itself (listener and gateway share its process; it is started again), its
worker (serve starts a new one), and in the scaled set-up the separate gateway, listener and worker
(each started again; a killed worker's job comes back through its expired lease, worker/lease.py).
Senders behave like a PACS and a script: they retry whatever was not acknowledged. Afterwards every
pair has exactly one complete CT series at the receiver (DCMTK storescp) and one succeeded job.
`make test` runs once per victim; the full sweep of 20 runs per victim is
`.venv/bin/pytest -m sweep tests/test_faults.py` (docs/reliability.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE

from service.settings import PHYSICS_BASELINE
from service.store import SUCCEEDED
from tests.cluster import file_bytes, new_pair, series_by_study
from tests.conftest import (
    START_TIMEOUT_S,
    PairFiles,
    free_port,
    http_json,
    port_open,
    start_psct,
    start_storescp,
    stop_process,
    wait_for,
)

SWEEP_RUNS = pytest.param(20, marks=pytest.mark.sweep, id="20-runs")
LEASE_S = 4.0  # a killed worker's job comes back this long after its last lease renewal
DICOM_PAIRS, REST_PAIRS = 2, 1
SEED = 7_000
SLICES = 160  # instances in every series (the serving grid's axial slices)
DONE_TIMEOUT_S = 240.0


def _store_until_acknowledged(port: int, ds: Dataset, stop: threading.Event) -> None:
    """What a PACS does: send again until a success status comes back."""
    while not stop.is_set():
        ae = AE(ae_title="FAULTSCU")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", port, ae_title="PSCT")
        if assoc.is_established:
            try:
                reply = assoc.send_c_store(ds)
                if "Status" in reply and int(reply.Status) == 0:
                    return
            finally:
                if assoc.is_established:
                    assoc.release()
        time.sleep(0.3)


def _post_until_accepted(base: str, pa: bytes, lateral: bytes, stop: threading.Event, accepted: list[str]) -> None:
    """What a script does: post again until a 202 comes back (its job id goes to `accepted`)."""
    while not stop.is_set():
        try:
            answer = httpx.post(f"{base}/reconstructions", files={"pa": ("pa.dcm", pa), "lateral": ("l.dcm", lateral)},
                                timeout=30)  # fmt: skip
            if answer.status_code == 202:
                accepted.append(answer.json()["id"])
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)


def _ready(base: str) -> bool:
    try:
        return http_json(f"{base}/readyz")["ready"]
    except OSError:
        return False


def _readyz_text(base: str) -> str:
    try:
        return httpx.get(f"{base}/readyz", timeout=10).text
    except httpx.HTTPError as exc:
        return repr(exc)


class Deployment:
    """`psct serve` (listener and gateway in one process, its worker a child it supervises), or the
    scaled set-up: `psct gateway`, `psct scp` and `psct worker` as separate processes on one
    PSCT_HOME, each started again after a crash as systemd or Kubernetes would."""

    def __init__(self, scaled: bool, env: dict[str, str], logs: Path) -> None:
        self.env, self.started, self.logs = env, [], logs
        logs.mkdir(parents=True, exist_ok=True)
        names = ("gateway", "scp", "worker") if scaled else ("serve",)
        self.processes = {name: self._start(name) for name in names}

    def _start(self, name: str) -> subprocess.Popen:
        process = start_psct(name, self.env, self.logs / f"{name}.log")  # restarts append to it
        self.started.append(process)
        return process

    def kill(self, victim: str) -> None:
        if victim == "serve-worker":  # serve's own child: serve notices and starts a new one
            child = subprocess.run(["pgrep", "-P", str(self.processes["serve"].pid)], capture_output=True, text=True)
            os.kill(int(child.stdout.split()[0]), signal.SIGKILL)
            return
        process = self.processes[victim]
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.processes[victim] = self._start(victim)  # a serve's orphaned worker may finish its job

    def tails(self, lines: int = 40) -> str:
        """The end of every process's output: what a failed run needs to be understood."""
        return "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
                         for log in sorted(self.logs.glob("*.log")))  # fmt: skip

    def stop(self) -> None:
        for process in self.started:
            stop_process(process, 35)
            subprocess.run(["pkill", "-9", "-g", str(process.pid)], check=False)  # orphans


# (victim, scaled set-up): serve and its worker; the separate gateway, listener and worker.
VICTIMS = (("serve", False), ("serve-worker", False), ("gateway", True), ("scp", True), ("worker", True))


@pytest.mark.slow
@pytest.mark.parametrize("runs", [1, SWEEP_RUNS])
@pytest.mark.parametrize(("victim", "scaled"), VICTIMS)
def test_kill_9_loses_nothing_acknowledged(victim: str, scaled: bool, runs: int, pair_files: PairFiles,
                                           tmp_path: Path) -> None:  # fmt: skip
    rng = np.random.default_rng([SEED, VICTIMS.index((victim, scaled))])
    for run in range(runs):
        _one_run(victim, scaled, run, rng, pair_files, tmp_path / f"run{run}")


def _one_run(victim: str, scaled: bool, run: int, rng: np.random.Generator, pair_files: PairFiles,
             folder: Path) -> None:  # fmt: skip
    receiver_port, http_port, dicom_port = free_port(), free_port(), free_port()
    received = folder / "received"
    receiver = start_storescp(received, "FAULTRX", receiver_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSCT_")}
    env.update(PSCT_HOME=str(folder / "home"), PSCT_HTTP_PORT=str(http_port),
               PSCT_DICOM_PORT=str(dicom_port), PSCT_DESTINATIONS=f"FAULTRX@127.0.0.1:{receiver_port}",
               PSCT_MODEL_PATH=str(PHYSICS_BASELINE),  # the fast model: this is about durability
               PSCT_LEASE_S=str(LEASE_S),
               PSCT_METRICS_PORT="0")  # fmt: skip  # no process here contends for a metrics port
    base = f"http://127.0.0.1:{http_port}"
    deployment = Deployment(scaled, env, folder / "logs")
    stop = threading.Event()
    try:
        wait_for(lambda: _ready(base) and port_open(dicom_port), START_TIMEOUT_S, "psct to be ready")
        pairs = [new_pair(pair_files.pa, pair_files.lateral, rng) for _ in range(DICOM_PAIRS + REST_PAIRS)]
        senders = [threading.Thread(target=_store_until_acknowledged, args=(dicom_port, ds, stop))
                   for pa, lateral in pairs[:DICOM_PAIRS] for ds in (pa, lateral)]  # fmt: skip
        accepted: list[str] = []
        senders += [threading.Thread(target=_post_until_accepted,
                                     args=(base, file_bytes(pa), file_bytes(lateral), stop, accepted))
                    for pa, lateral in pairs[DICOM_PAIRS:]]  # fmt: skip
        for sender in senders:
            sender.start()
        time.sleep(float(rng.uniform(0.2, 6.0)))  # somewhere in receiving, pairing, reconstructing, sending
        deployment.kill(victim)
        try:
            wait_for(lambda: _ready(base) and port_open(dicom_port), START_TIMEOUT_S, "psct after the kill")
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}; /readyz {_readyz_text(base)}\n{deployment.tails()}") from None
        for sender in senders:
            sender.join(START_TIMEOUT_S)
        assert not any(sender.is_alive() for sender in senders), "a pair was never acknowledged"

        def all_done() -> bool:
            jobs = http_json(f"{base}/reconstructions")["items"]
            return len(jobs) >= len(pairs) and all(j["status"] == SUCCEEDED for j in jobs)

        try:
            wait_for(all_done, DONE_TIMEOUT_S, f"every job succeeded (run {run}, {victim} killed)")
        except AssertionError as timeout:
            states = [(j["id"], j["status"], j.get("error")) for j in http_json(f"{base}/reconstructions")["items"]]
            raise AssertionError(f"{timeout}; jobs {states}\n{deployment.tails()}") from None
        jobs = http_json(f"{base}/reconstructions")["items"]
        found = series_by_study(received)
        # DICOM: one job and one complete series per study, however often the PACS re-sent.
        for pa, _ in pairs[:DICOM_PAIRS]:
            study = str(pa.StudyInstanceUID)
            assert [j["study_instance_uid"] for j in jobs].count(study) == 1, "a DICOM pair has no or two jobs"
            assert list(found.get(study, {}).values()) == [SLICES], found.get(study)
        # REST: each 202's job delivered its series once (a 202 lost in the kill makes the retry a
        # new job, as the contract says every post is).
        for job_id in accepted:
            job = http_json(f"{base}/reconstructions/{job_id}")
            assert job["status"] == SUCCEEDED
            assert found[job["study_instance_uid"]][job["series_instance_uid"]] == SLICES
    finally:
        stop.set()
        deployment.stop()
        receiver.terminate()
        receiver.wait()
