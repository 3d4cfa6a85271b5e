"""Broker restarts lose no queued job (issue 7): a job queued while no worker runs survives a
kill -9 of Redis (append-only file, fsync always, as deploy/ configures it) or, with the embedded
queue, the end of every process; a worker started afterwards runs it."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import PHYSICS_BASELINE, get_settings
from service.store import SUCCEEDED, JobStore
from tests.conftest import (
    START_TIMEOUT_S,
    PairFiles,
    apply_env,
    free_port,
    port_open,
    require,
    start_psct,
    stop_process,
    wait_for,
)
from tests.test_end_to_end import _submit

JOB_TIMEOUT_S = 120.0


class Redis:
    """redis-server persisting every write to its append-only file before answering."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.process = self.start()

    def start(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [require("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: port_open(self.port), START_TIMEOUT_S, "redis-server")
        return process

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[Redis]:
    redis = Redis(tmp_path)
    yield redis
    stop_process(redis.process, 5)


def _runs_later(job_id: str) -> None:
    """A worker started now finds the job and runs it."""
    worker = start_psct("worker", {**os.environ})
    try:
        store = JobStore(get_settings().database)
        job = wait_for(lambda: (j := store.get(job_id)) and j.status == SUCCEEDED and j, JOB_TIMEOUT_S, "the job")
        assert job.instances == 160
    finally:
        stop_process(worker, 30)


@pytest.mark.slow
def test_a_job_queued_in_redis_survives_kill_9_of_redis(
    pair_files: PairFiles, durable_redis: Redis, psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env({"PSCT_BROKER_URL": durable_redis.url, "PSCT_MODEL_PATH": str(PHYSICS_BASELINE)}, monkeypatch)
    job_id = _submit(pair_files)  # 202: queued in Redis, no worker running
    durable_redis.process.send_signal(signal.SIGKILL)
    durable_redis.process.wait()
    durable_redis.process = durable_redis.start()  # replays its append-only file
    _runs_later(job_id)


@pytest.mark.slow
def test_a_job_in_the_embedded_queue_survives_the_end_of_every_process(
    pair_files: PairFiles, psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env({"PSCT_MODEL_PATH": str(PHYSICS_BASELINE)}, monkeypatch)
    job_id = _submit(pair_files)  # queued in PSCT_HOME's SQLite queue by this (test) process
    from tests.conftest import clear_caches

    clear_caches()  # as if the gateway had stopped: nothing of it stays in memory
    _runs_later(job_id)
