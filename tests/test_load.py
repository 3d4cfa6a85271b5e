"""Load (issue 7): concurrent associations, each carrying a pair, and REST submissions all at once
into one `psct serve` on loopback: every one acknowledged, every job completes, nothing lost.

Prints acknowledgement and completion latency (p50/p95) and the peak memory of serve and its
worker. `make test` runs 4 associations and 10 REST posts; the issue's 20 + 100 is
`.venv/bin/pytest -m sweep -s tests/test_load.py` (docs/reliability.md).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE

from service.settings import PHYSICS_BASELINE
from service.store import SUCCEEDED
from tests.cluster import file_bytes, new_pair
from tests.conftest import START_TIMEOUT_S, PairFiles, free_port, http_json, start_psct, stop_process, wait_for
from tests.test_faults import _ready

SWEEP_LOAD = pytest.param(20, 100, marks=pytest.mark.sweep, id="20-100")
DONE_TIMEOUT_S = 900.0


def _pair_by_dicom(port: int, pa: Dataset, lateral: Dataset, latencies: list[float], failures: list[str]) -> None:
    """One association carrying both views; latency: association start to the second success."""
    start = time.perf_counter()
    ae = AE(ae_title="LOADSCU")
    for ds in (pa, lateral):
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="PSCT")
    if not assoc.is_established:
        failures.append("association not established")
        return
    try:
        for ds in (pa, lateral):
            reply = assoc.send_c_store(ds)
            if "Status" not in reply or int(reply.Status) != 0:
                failures.append(f"C-STORE status {reply.get('Status')}")
                return
    finally:
        assoc.release()
    latencies.append(time.perf_counter() - start)


def _pair_by_rest(base: str, pa: bytes, lateral: bytes, latencies: list[float], failures: list[str]) -> None:
    start = time.perf_counter()
    answer = httpx.post(f"{base}/reconstructions", files={"pa": ("pa.dcm", pa), "lateral": ("l.dcm", lateral)},
                        timeout=120)  # fmt: skip
    if answer.status_code != 202:
        failures.append(f"REST {answer.status_code}: {answer.text[:200]}")
        return
    latencies.append(time.perf_counter() - start)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentiles(values: list[float]) -> str:
    return f"p50 {np.percentile(values, 50):.2f} s, p95 {np.percentile(values, 95):.2f} s"


@pytest.mark.slow
@pytest.mark.parametrize(("associations", "posts"), [(4, 10), SWEEP_LOAD])
def test_concurrent_pairs_by_dicom_and_rest_all_complete(associations: int, posts: int, pair_files: PairFiles,
                                                         tmp_path: Path) -> None:  # fmt: skip
    http_port, dicom_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSCT_")}
    env.update(PSCT_HOME=str(tmp_path / "home"), PSCT_HTTP_PORT=str(http_port), PSCT_DICOM_PORT=str(dicom_port),
               PSCT_MODEL_PATH=str(PHYSICS_BASELINE))  # fmt: skip  # the fast model: this is about the service
    base = f"http://127.0.0.1:{http_port}"
    serve = start_psct("serve", env)
    try:
        wait_for(lambda: _ready(base), START_TIMEOUT_S, "psct serve")
        rng = np.random.default_rng(11)
        pairs = [new_pair(pair_files.pa, pair_files.lateral, rng) for _ in range(associations + posts)]
        acks: list[float] = []
        failures: list[str] = []
        threads = [threading.Thread(target=_pair_by_dicom, args=(dicom_port, pa, lat, acks, failures))
                   for pa, lat in pairs[:associations]]  # fmt: skip
        threads += [threading.Thread(target=_pair_by_rest, args=(base, file_bytes(pa), file_bytes(lat), acks, failures))
                    for pa, lat in pairs[associations:]]  # fmt: skip
        start = time.perf_counter()
        for thread in threads:  # all at once
            thread.start()
        for thread in threads:
            thread.join(300)
        assert failures == [] and len(acks) == len(pairs)

        def all_done() -> list | None:
            jobs = http_json(f"{base}/reconstructions?limit=500")["items"]
            return jobs if len(jobs) == len(pairs) and all(j["status"] == SUCCEEDED for j in jobs) else None

        jobs = wait_for(all_done, DONE_TIMEOUT_S, "every job to succeed")
        total_s = time.perf_counter() - start
        studies = sorted(str(pa.StudyInstanceUID) for pa, _ in pairs)
        assert sorted(j["study_instance_uid"] for j in jobs) == studies  # one job per pair, none lost
        worker = subprocess.run(["pgrep", "-P", str(serve.pid)], capture_output=True, text=True).stdout.split()
        queued_to_done = [(datetime.fromisoformat(j["finished_at"]) - datetime.fromisoformat(j["created_at"]))
                          .total_seconds() for j in jobs]  # fmt: skip
        print(f"\n{associations} associations + {posts} REST posts at once: acknowledged {_percentiles(acks)}; "
              f"job created -> succeeded {_percentiles(queued_to_done)}; all {len(jobs)} jobs done in "
              f"{total_s:.0f} s ({len(jobs) / total_s * 60:.1f} per minute); "
              f"peak memory serve {_peak_rss_mib(serve.pid):.0f} MiB, worker "
              f"{_peak_rss_mib(int(worker[0])):.0f} MiB")  # fmt: skip
    finally:
        stop_process(serve, 35)
