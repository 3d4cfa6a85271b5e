"""Readiness checks: each answers "ok" or "failed: why". The model file must be present with the
sha256 its sidecar states (hashed once per change of the file)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from service import files
from service.queue import ping_broker
from service.settings import Settings
from service.store import JobStore


@lru_cache(maxsize=4)
def _verdict(path: Path, mtime_ns: int, size: int) -> str:
    sidecar_path = path.with_suffix(".json")
    if not sidecar_path.is_file():
        return f"failed: sidecar {sidecar_path.name} missing"
    expected = json.loads(sidecar_path.read_text()).get("sha256")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return "ok" if digest == expected else f"failed: {path.name} sha256 does not match its sidecar"


def model_check(settings: Settings) -> str:
    path = settings.model_path
    if not path.is_file():
        return f"failed: model file {path} missing"
    stat = path.stat()
    return _verdict(path, stat.st_mtime_ns, stat.st_size)


def probe(check: Callable[[], object]) -> str:
    try:
        check()
    except Exception as exc:
        return f"failed: {type(exc).__name__}: {exc}"
    return "ok"


def shared_checks(settings: Settings, store: JobStore) -> dict[str, str]:
    """What every process needs: the store and the broker reachable, PSCT_HOME above its watermark."""
    low = files.low_disk(settings.home, settings.min_free_mb)
    return {"store": probe(store.ping), "queue": probe(ping_broker), "disk": "ok" if low is None else f"failed: {low}"}


def listener_checks(settings: Settings) -> dict[str, str]:
    return shared_checks(settings, JobStore(settings.database))
