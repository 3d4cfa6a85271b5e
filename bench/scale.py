"""Benchmark of the scaled set-up (issue 6): prints figures, asserts nothing. Part of `make bench`.

On a real redis-server and PostgreSQL with `psct gateway`, `psct scp` and N `psct worker`
(tests/cluster.py), for N = 1 and 2 (more with `--workers`):
- queue-to-start latency: one pair at a time into an idle set-up, job created -> worker started;
- throughput: a burst of pairs sent at once (half DICOM, half REST), studies per minute from the
  first send to the last series delivered; and each stage's mean seconds from the workers' metrics.

    .venv/bin/python bench/scale.py [--workers 1 2] [--burst 8] [--idle 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model.simulate import simulate_pair  # noqa: E402
from service.settings import DEFAULT_MODEL  # noqa: E402
from tests.cluster import metric, metrics_of, new_pair, running, submit_all  # noqa: E402
from tests.postgres import start_postgres  # noqa: E402

STAGES = ("decode", "inference", "encode", "send")
DONE_TIMEOUT_S = 1800.0


def _when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _wait_done(cluster, count: int) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DONE_TIMEOUT_S
    while time.monotonic() < deadline:
        cluster.check_alive()
        jobs = cluster.jobs()
        if len(jobs) >= count and all(j["status"] in ("succeeded", "failed") for j in jobs):
            failed = [j["error"] for j in jobs if j["status"] != "succeeded"]
            assert not failed, failed
            return jobs
        time.sleep(0.5)
    raise TimeoutError("jobs did not finish")


def measure(workers: int, burst: int, idle: int, pair_paths: tuple[Path, Path], folder: Path, server) -> dict:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(workers)
    with running(folder, server.new_database(), workers) as cluster:
        waits = []
        for done in range(1, idle + 1):  # idle: one pair at a time
            cluster.send_by_rest(*new_pair(*pair_paths, rng))
            jobs = _wait_done(cluster, done)
            newest = max(jobs, key=lambda j: j["created_at"])
            waits.append(_when(newest["started_at"]) - _when(newest["created_at"]))
        pairs = [new_pair(*pair_paths, rng) for _ in range(burst)]
        start = submit_all(cluster, pairs, burst // 2)
        jobs = _wait_done(cluster, idle + burst)
        last = max(_when(j["finished_at"]) for j in jobs)
        samples = [metrics_of(f"http://127.0.0.1:{p}/metrics") for p in cluster.worker_metrics_ports]
    stage_s = {}
    for stage in STAGES:
        total = sum(metric(s, "psct_stage_seconds_sum", stage=stage) for s in samples)
        count = sum(metric(s, "psct_stage_seconds_count", stage=stage) for s in samples)
        stage_s[stage] = total / count
    return {"workers": workers, "per_min": burst / (last - start) * 60, "burst_s": last - start,
            "wait_median_s": statistics.median(waits), "wait_max_s": max(waits), "stage_s": stage_s}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--burst", type=int, default=8, help="pairs sent at once")
    parser.add_argument("--idle", type=int, default=5, help="single pairs for the queue-to-start latency")
    args = parser.parse_args()
    import onnxruntime as ort

    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; "
          f"onnxruntime {ort.__version__} {ort.get_available_providers()}; {now}")  # fmt: skip
    server = start_postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            pair = simulate_pair(5.0, 11)
            paths = (folder / "pa.dcm", folder / "lateral.dcm")
            pair.pa.save_as(paths[0], enforce_file_format=True)
            pair.lateral.save_as(paths[1], enforce_file_format=True)
            rows = [measure(n, args.burst, args.idle, paths, folder / f"w{n}", server) for n in args.workers]
    finally:
        server.stop()
    print(f"\nmodel: the default, {DEFAULT_MODEL.name}; {args.burst} pairs per burst, {args.idle} idle submissions")
    print("| workers | studies/min | burst wall s | queue-to-start median / max s | "
          + " | ".join(f"{s} s/job" for s in STAGES) + " |")  # fmt: skip
    print("| --- " * (4 + len(STAGES)) + "|")
    for r in rows:
        stages = " | ".join(f"{r['stage_s'][s]:.2f}" for s in STAGES)
        print(f"| {r['workers']} | {r['per_min']:.1f} | {r['burst_s']:.1f} | {r['wait_median_s']:.3f} / "
              f"{r['wait_max_s']:.3f} | {stages} |")  # fmt: skip


if __name__ == "__main__":
    main()
