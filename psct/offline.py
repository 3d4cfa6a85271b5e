"""Offline commands: reconstruct a pair from files, simulate a pair, the demo. No service involved."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydicom import dcmread
from tqdm import tqdm

from model.simulate import simulate_pair
from service import files
from service.intake import parse
from service.settings import DEFAULT_MODEL
from worker.ct_series import ct_series
from worker.pipeline import reconstruct
from worker.preview import caption_for, preview_png
from worker.runtime import cached

# Bone threshold for the demo's Dice score (cancellous bone starts around 300 HU).
BONE_THRESHOLD_HU = 300.0


def reconstruct_files(pa: Path, lateral: Path, output: Path, preview: Path | None, model: Path | None) -> int:
    with tqdm(total=4, desc="reconstruct", unit="step") as bar:
        runtime = cached(model or DEFAULT_MODEL)
        pa_ds, lateral_ds = parse(pa.read_bytes(), str(pa)), parse(lateral.read_bytes(), str(lateral))
        bar.update(1)
        volume, notes = reconstruct(pa_ds, lateral_ds, runtime)
        bar.update(1)
        # Offline runs have no job: a fresh id, so two runs never share UIDs.
        datasets = ct_series(
            volume, runtime.voxel_mm, pa_ds, lateral_ds, uuid.uuid4().hex, runtime.sidecar, datetime.now(UTC)
        )
        output.mkdir(parents=True, exist_ok=True)
        for ds in datasets:
            ds.save_as(output / f"CT{ds.InstanceNumber:04d}.dcm", enforce_file_format=True)
        bar.update(1)
        if preview is not None:
            files.write_file(preview, preview_png(volume, caption_for(runtime.sidecar)))
        bar.update(1)
    for note in notes:
        tqdm.write(f"geometry: {note}")
    return len(datasets)


def write_simulated_pair(age: float, seed: int, output: Path, monochrome1: bool = False) -> list[Path]:
    pair = simulate_pair(age, seed, monochrome1)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, ds in (("pa.dcm", pair.pa), ("lateral.dcm", pair.lateral)):
        ds.save_as(output / name, enforce_file_format=True)
        written.append(output / name)
    truth = output / "truth.npz"
    np.savez_compressed(truth, hu=pair.truth_hu.astype(np.int16), voxel_mm=pair.voxel_mm)
    written.append(truth)
    return written


def run_demo(output: Path, age: float, seed: int) -> list[str]:
    pa, lateral, truth_path = write_simulated_pair(age, seed, output / "input")
    reconstruct_files(pa, lateral, output / "ct", output / "preview.png", None)
    truth = np.load(truth_path)["hu"].astype(np.float32)
    volume = np.stack([dcmread(p).pixel_array for p in sorted((output / "ct").glob("*.dcm"))]).astype(np.float32)
    bone, bone_truth = volume > BONE_THRESHOLD_HU, truth > BONE_THRESHOLD_HU
    dice = 2.0 * np.sum(bone & bone_truth) / max(1, np.sum(bone) + np.sum(bone_truth))
    return [
        f"phantom: age {age:g} y, seed {seed} (minimal ellipsoid head)",
        f"model: {cached(DEFAULT_MODEL).label}",
        f"MAE {np.mean(np.abs(volume - truth)):.1f} HU, bone Dice at {BONE_THRESHOLD_HU:g} HU {dice:.3f}",
        f"CT series: {output / 'ct'}; preview: {output / 'preview.png'}",
        "Research reconstruction, not for diagnostic use.",
    ]
