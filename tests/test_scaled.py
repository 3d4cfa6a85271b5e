"""Issue 6: the scaled path. A real redis-server, a real PostgreSQL job store, `psct gateway`,
`psct scp` and two `psct worker` processes: 20 pairs at once, half through the DICOM listener and
half by REST, all succeed, each exactly once, and the metrics, audit table and logs show them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom import dcmread

from service.store import ASSOCIATION, EXPORT, JOB_CREATED, JOB_FINISHED, SUCCEEDED, JobStore
from tests.cluster import metric, metrics_of, new_pair, running, series_by_study, submit_all
from tests.conftest import PairFiles, wait_for

PAIRS, BY_DICOM, WORKERS = 20, 10, 2
SLICES = 160  # instances in every series (the serving grid's axial slices)
DONE_TIMEOUT_S = 600.0  # 20 reconstructions on two workers sharing two cores, with room for a slow CI


@pytest.mark.slow
def test_twenty_pairs_through_two_workers_on_redis_and_postgresql(
    pair_files: PairFiles, postgres_url: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(6_020)
    pairs = [new_pair(pair_files.pa, pair_files.lateral, rng) for _ in range(PAIRS)]
    studies = {str(pa.StudyInstanceUID) for pa, _ in pairs}
    with running(tmp_path, postgres_url, WORKERS) as cluster:
        submit_all(cluster, pairs, BY_DICOM)

        def all_done() -> bool:
            cluster.check_alive()
            jobs = cluster.jobs()
            return len(jobs) >= PAIRS and all(j["status"] in (SUCCEEDED, "failed") for j in jobs)

        wait_for(all_done, DONE_TIMEOUT_S, "every job to finish", interval_s=1.0)
        jobs = cluster.jobs()
        gateway = metrics_of(f"{cluster.base}/metrics")
        scp = metrics_of(f"http://127.0.0.1:{cluster.scp_metrics_port}/metrics")
        workers = [metrics_of(f"http://127.0.0.1:{port}/metrics") for port in cluster.worker_metrics_ports]
        ready = httpx.get(f"{cluster.base}/readyz", timeout=10).json()

    # Each pair exactly once: one succeeded job per study, one complete series per study at the PACS.
    assert len(jobs) == PAIRS and {j["study_instance_uid"] for j in jobs} == studies
    assert [j["status"] for j in jobs] == [SUCCEEDED] * PAIRS, [j["error"] for j in jobs]
    assert sorted(j["source"] for j in jobs) == ["dicom"] * BY_DICOM + ["rest"] * (PAIRS - BY_DICOM)
    found = series_by_study(cluster.received)
    assert set(found) == studies
    for job in jobs:
        assert found[job["study_instance_uid"]] == {job["series_instance_uid"]: SLICES}

    # Metrics: the gateway's store view, the listener's traffic, and both workers sharing the work.
    assert metric(gateway, "psct_jobs", status=SUCCEEDED) == PAIRS
    assert metric(gateway, "psct_queue_depth") == 0 and metric(gateway, "psct_workers_live") == WORKERS
    assert metric(gateway, "psct_rest_submissions_total", outcome="accepted") == PAIRS - BY_DICOM
    assert metric(scp, "psct_dicom_stores_total", outcome="stored") == 2 * BY_DICOM
    assert metric(scp, "psct_dicom_associations_total", outcome="accepted") == BY_DICOM
    done = [metric(w, "psct_worker_jobs_total", status=SUCCEEDED) for w in workers]
    assert sum(done) == PAIRS and min(done) > 0, done
    for stage in ("decode", "inference", "encode", "send"):
        assert sum(metric(w, "psct_stage_seconds_count", stage=stage) for w in workers) == PAIRS, stage
    assert sum(metric(w, "psct_exports_total", outcome="sent") for w in workers) == PAIRS
    assert sum(metric(w, "psct_queue_wait_seconds_count") for w in workers) == PAIRS
    for w in workers:
        (name, labels), value = next((k, v) for k, v in w.items() if k[0] == "psct_model_info")
        assert value == 1 and dict(labels)["provider"] == "CPUExecutionProvider"
    assert len(ready["workers"]) == WORKERS and ready["ready"]

    # Audit: every association, job and export is in the PostgreSQL store's table.
    store = JobStore(postgres_url)
    counts = {e: len(store.audit_events(e)) for e in (ASSOCIATION, JOB_CREATED, JOB_FINISHED, EXPORT)}
    assert counts == {ASSOCIATION: BY_DICOM, JOB_CREATED: PAIRS, JOB_FINISHED: PAIRS, EXPORT: PAIRS}, counts
    assert all(json.loads(e.detail)["sent"] for e in store.audit_events(EXPORT))

    # Logs: one JSON object per line from every process; the workers' job lines carry the job id;
    # no patient name or ID anywhere.
    patient = dcmread(pair_files.pa)
    identifiers = [str(patient.PatientName), str(patient.PatientID)]
    job_ids = {j["id"] for j in jobs}
    for name in cluster.processes:
        if name in ("redis", "storescp"):
            continue
        text = cluster.log(name).read_text()
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert records, f"{name} logged nothing"
        assert not [i for i in identifiers if i and i in text], f"{name} logged a patient identifier"
        if name.startswith("worker"):
            tagged = {r["job_id"] for r in records if r.get("job_id")}
            assert tagged and tagged <= job_ids, name
