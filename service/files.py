"""The layout of PSCT_HOME and durable writes: what is acknowledged is on disk, never half written.

Shared by the service (inbox, uploads, downloads) and the workers (results).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pydicom.dataset import Dataset


def inbox_path(home: Path, study_uid: str, sop_uid: str) -> Path:
    """A received instance; the UIDs are validated before they get here (digits and dots only)."""
    return home / "inbox" / study_uid / f"{sop_uid}.dcm"


def upload_dir(home: Path, job_id: str) -> Path:
    return home / "uploads" / job_id


def job_dir(home: Path, job_id: str) -> Path:
    return home / "results" / job_id


def series_dir(home: Path, job_id: str) -> Path:
    return job_dir(home, job_id) / "series"


def preview_path(home: Path, job_id: str) -> Path:
    return job_dir(home, job_id) / "preview.png"


def series_files(home: Path, job_id: str) -> list[Path]:
    return sorted(series_dir(home, job_id).glob("*.dcm"))


def low_disk(home: Path, min_free_mb: float) -> str | None:
    """Why PSCT_HOME cannot take more data (free space under the watermark), or None."""
    existing = next(p for p in (home, *home.parents) if p.exists())
    free_mb = shutil.disk_usage(existing).free / 2**20
    if free_mb < min_free_mb:
        return f"PSCT_HOME has {free_mb:.0f} MB free, below PSCT_MIN_FREE_MB {min_free_mb:g}"
    return None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_series(home: Path, job_id: str, datasets: list[Dataset]) -> list[Path]:
    """Write all instances into a fresh folder, then swap it in: readers see the old or the new series."""
    final = series_dir(home, job_id)
    staging = final.with_name("series.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for ds in datasets:
        path = staging / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
    for path in staging.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    old = final.with_name("series.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)
    return series_files(home, job_id)


def write_file(path: Path, data: bytes) -> None:
    """Durable write: temp file, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)
