"""The compose demo's round trip, without containers: a real Orthanc that knows PSCT as a modality,
`psct serve` delivering back to it, and `python -m psct.pacs_demo` driving Orthanc's REST API only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    START_TIMEOUT_S,
    free_port,
    http_json,
    port_open,
    start_orthanc,
    start_psct,
    stop_process,
    wait_for,
)


@pytest.mark.slow
def test_a_pair_sent_from_orthanc_comes_back_as_a_ct_series(tmp_path: Path) -> None:
    http_port, dicom_port = free_port(), free_port()
    orthanc_process, orthanc = start_orthanc(tmp_path / "orthanc", {"psct": ["PSCT", "127.0.0.1", dicom_port]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSCT_")}
    env.update(PSCT_HOME=str(tmp_path / "home"), PSCT_HTTP_PORT=str(http_port), PSCT_DICOM_PORT=str(dicom_port),
               PSCT_DESTINATIONS=orthanc.destination, PSCT_METRICS_PORT="0")  # fmt: skip
    serve = start_psct("serve", env)
    try:
        wait_for(lambda: port_open(dicom_port) and port_open(http_port), START_TIMEOUT_S, "psct serve")
        demo = subprocess.run(
            [sys.executable, "-m", "psct.pacs_demo", "--orthanc", f"http://127.0.0.1:{orthanc.http_port}",
             "--timeout", "300"], cwd=REPO, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "CT series back in Orthanc: 160 instances" in demo.stdout, demo.stdout
        jobs = http_json(f"http://127.0.0.1:{http_port}/reconstructions")["items"]
        assert len(jobs) == 1 and jobs[0]["source"] == "dicom" and jobs[0]["status"] == "succeeded"
        ct = [s for s in orthanc.get("/series?expand") if s["MainDicomTags"].get("Modality") == "CT"]
        assert len(ct) == 1 and "not for diagnostic use" in ct[0]["MainDicomTags"]["SeriesDescription"].lower()
    finally:
        stop_process(serve)
        stop_process(orthanc_process, 10)
