"""Offline commands: reconstruct a pair from files, simulate a pair, the demo. No service involved."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pydicom import dcmread
from tqdm import tqdm

from model import __version__
from model.anatomy import occipitofrontal_slice
from model.dx_writer import OPTIONAL_GEOMETRY
from model.geometry import STANDARD_ROOM, RoomDefaults
from model.grid import VOXEL_MM
from model.radiograph import display_values
from model.simulator import HeadPair, simulate_ct, simulate_head
from model.skull import CONDITIONS
from service import files
from service.intake import parse
from service.settings import DEFAULT_MODEL
from worker.ct_series import SIMULATED_TRUTH, ct_series
from worker.pipeline import reconstruct
from worker.preview import caption_for, mid_slices, preview_png, window_bone
from worker.runtime import cached

# Bone threshold for the demo's Dice score (cancellous bone starts around 300 HU).
BONE_THRESHOLD_HU = 300.0


def reconstruct_files(
    pa: Path, lateral: Path, output: Path, preview: Path | None, model: Path | None, room: RoomDefaults = STANDARD_ROOM
) -> int:
    with tqdm(total=4, desc="reconstruct", unit="step") as bar:
        runtime = cached(model or DEFAULT_MODEL)
        pa_ds, lateral_ds = parse(pa.read_bytes(), str(pa)), parse(lateral.read_bytes(), str(lateral))
        bar.update(1)
        volume, notes = reconstruct(pa_ds, lateral_ds, runtime, room=room)
        bar.update(1)
        # Offline runs have no job: a fresh id, so two runs never share UIDs.
        datasets = ct_series(
            volume, runtime.voxel_mm, pa_ds, lateral_ds, uuid.uuid4().hex, runtime.sidecar, datetime.now(UTC), notes
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


def write_simulated_pair(
    age: float,
    seed: int,
    output: Path,
    condition: str = "normal",
    kvp: float | None = None,
    preview: Path | None = None,
    omit_geometry: bool = False,
    ct: Path | None = None,
    storage: str | None = None,
) -> list[Path]:
    """The DICOM pair, the ground truth (HU and labels with their grid in `truth.npz`, HU also as a CT
    series in the pair's study under `truth-ct/`) and an optional contact sheet.

    With `ct`, a real CT replaces the procedural head (age and condition then only label the output).
    """
    omit = frozenset(OPTIONAL_GEOMETRY) if omit_geometry else frozenset()
    if ct is not None:
        pair = simulate_ct(ct, seed, kvp, omit, storage)
    else:
        pair = simulate_head(age, condition, seed, kvp, omit, storage)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, view in (("pa.dcm", pair.pa), ("lateral.dcm", pair.lateral)):
        view.dataset.save_as(output / name, enforce_file_format=True)
        written.append(output / name)
    truth = output / "truth.npz"
    np.savez_compressed(
        truth, hu=np.rint(pair.head.hu).astype(np.int16), labels=pair.head.labels, voxel_mm=pair.head.voxel_mm,
        frame="DICOM LPS mm, isocentre at the volume centre, array order (z, y, x), z from feet to head",
        age_y=age, condition=condition if ct is None else "real-ct", seed=seed, source=str(ct or "phantom"),
    )  # fmt: skip
    written.append(truth)
    truth_series = output / "truth-ct"
    truth_series.mkdir(exist_ok=True)
    engine = {"kind": SIMULATED_TRUTH, "name": "PSCT data engine", "version": __version__}
    key = f"simulated-truth/{ct or 'phantom'}/{age}/{condition}/{seed}"  # same inputs, same UIDs
    for ds in ct_series(pair.head.hu, pair.head.voxel_mm, pair.pa.dataset, pair.lateral.dataset, key, engine,
                        datetime.now(UTC)):  # fmt: skip
        ds.save_as(truth_series / f"CT{ds.InstanceNumber:04d}.dcm", enforce_file_format=True)
    written.append(truth_series)
    if preview is not None:
        files.write_file(preview, contact_sheet(pair))
        written.append(preview)
    return written


def write_dataset(count: int, output: Path, seed: int, truth_pool: int, omit_probability: float) -> Path:
    """Pairs 0..count-1 of the stream into `output`, with a manifest saying what they are."""
    from model.dataset import AGE_RANGE_Y, NORMAL_SHARE, PairStream

    stream = PairStream(count, seed, truth_pool, output, omit_probability)
    specs = [asdict(stream[i].spec) for i in tqdm(range(count), desc="pairs", unit="pair")]
    manifest = {
        "what": "PSCT training pairs: procedural pediatric heads, simulated radiographs (synthetic, research only)",
        "engine_version": __version__, "base_seed": seed, "count": count, "truth_pool": truth_pool,
        "truth_voxel_mm": VOXEL_MM * truth_pool, "omit_geometry_probability": omit_probability,
        "age_range_y": AGE_RANGE_Y, "normal_share": NORMAL_SHARE, "pairs": specs,
    }  # fmt: skip
    path = output / f"manifest-seed{seed}.json"
    files.write_file(path, json.dumps(manifest, indent=1).encode())
    return path


def contact_sheet(pair: HeadPair, height_px: int = 240) -> bytes:
    """Phantom slices (bone window) beside both radiographs as displayed, one PNG row."""
    slices = mid_slices(pair.head.hu)
    if pair.head.labels.any():  # a phantom: show the axial section of the OFC plane, where shapes differ
        slices[0] = pair.head.hu[occipitofrontal_slice(pair.head.labels)]
    panels = [_fit(s, height_px) for s in (window_bone(x) for x in slices)]
    for view in (pair.pa, pair.lateral):
        values = display_values(view.dataset)
        low, high = np.percentile(values, [0.5, 99.5])
        panels.append(_fit((np.clip((values - low) / max(high - low, 1e-9), 0, 1) * 255).astype(np.uint8), height_px))
    row = np.concatenate([np.pad(p, ((0, 0), (0, 4))) for p in panels], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(row).save(buffer, format="PNG")
    return buffer.getvalue()


def _fit(image: np.ndarray, height_px: int) -> np.ndarray:
    width = max(1, round(image.shape[1] * height_px / image.shape[0]))
    return np.asarray(Image.fromarray(image).resize((width, height_px), Image.BILINEAR))


def run_demo(output: Path, age: float, seed: int) -> list[str]:
    pa, lateral, truth_path = write_simulated_pair(age, seed, output / "input")[:3]
    reconstruct_files(pa, lateral, output / "ct", output / "preview.png", None)
    truth = np.load(truth_path)["hu"].astype(np.float32)
    volume = np.stack([dcmread(p).pixel_array for p in sorted((output / "ct").glob("*.dcm"))]).astype(np.float32)
    bone, bone_truth = volume > BONE_THRESHOLD_HU, truth > BONE_THRESHOLD_HU
    dice = 2.0 * np.sum(bone & bone_truth) / max(1, np.sum(bone) + np.sum(bone_truth))
    return [
        f"phantom: age {age:g} y, seed {seed} (procedural skull, simulated polychromatic radiographs)",
        f"model: {cached(DEFAULT_MODEL).label}",
        f"MAE {np.mean(np.abs(volume - truth)):.1f} HU, bone Dice at {BONE_THRESHOLD_HU:g} HU {dice:.3f}",
        f"CT series: {output / 'ct'}; preview: {output / 'preview.png'}",
        "Research reconstruction, not for diagnostic use.",
    ]


def write_condition_sheet(path: Path, ages: tuple[float, ...], seed: int) -> None:
    """Every condition at every age, one contact-sheet row each (phantom slices + both radiographs).

    Row k uses seed `seed + k`: each row is another child in another room, as the data engine varies them.
    """
    rows = []
    for age in ages:
        for condition in CONDITIONS:
            row_seed = seed + len(rows)
            pair = simulate_head(age, condition, row_seed)
            image = np.asarray(Image.open(io.BytesIO(contact_sheet(pair, height_px=200))))
            label = Image.new("L", (image.shape[1], 14))
            look = pair.pa.setup.look
            text = (f"{condition}, {age:g} y (seed {row_seed}; {look.storage}, "
                    f"{pair.pa.setup.beam.kvp:.0f} kVp, equalisation {look.unsharp_amount:.1f})")  # fmt: skip
            ImageDraw.Draw(label).text((2, 1), text, fill=255)
            rows.append(np.concatenate([np.asarray(label), image], axis=0))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]))) for r in rows], axis=0)
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, format="PNG", optimize=True)
    files.write_file(path, buffer.getvalue())
