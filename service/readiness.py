"""Readiness of the model file: present, and its sha256 matches the sidecar (checked once per change)."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from service.settings import Settings


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
