"""Real CTs into the simulator: read a CT series or NIfTI, resample to HU on an isotropic grid
centred on the head, remove the table. Reading files is the edge; resampling is pure.

Every affine here maps array index (i, j, k) of a (z, y, x) array to DICOM LPS millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydicom import Dataset, dcmread
from scipy import ndimage

from model.errors import ModelInputError
from model.grid import axis_mm

# Body threshold for table removal: air and foam are below, skin and tissue above.
BODY_HU = -400.0
AIR_HU = -1000.0


class CtError(ModelInputError):
    """A CT cannot be used as simulation input; the message says why."""


@dataclass(frozen=True)
class _Frame:
    """One 2D CT slice with what placing it in LPS needs."""

    position_mm: np.ndarray
    orientation: np.ndarray  # (2, 3): row direction, column direction
    pixel_mm: tuple[float, float]  # (between rows, between columns)
    thickness_mm: float
    hu: np.ndarray


def _item(ds: Dataset, frame: Dataset | None, sequence: str) -> Dataset:
    """A functional-group macro of an enhanced image: per-frame overrides shared."""
    for group in (frame, ds.get("SharedFunctionalGroupsSequence", [None])[0]):
        if group is not None and sequence in group:
            return group[sequence][0]
    raise CtError(f"enhanced CT {ds.get('SOPInstanceUID', '?')}: no {sequence} for a frame")


def _frame(position: Dataset, orientation: Dataset, measures: Dataset, rescale: Dataset, pixels: np.ndarray) -> _Frame:
    hu = pixels * float(rescale.get("RescaleSlope", 1)) + float(rescale.get("RescaleIntercept", 0))
    return _Frame(
        np.array(position.ImagePositionPatient, float),
        np.reshape(orientation.ImageOrientationPatient, (2, 3)).astype(float),
        tuple(float(v) for v in measures.PixelSpacing),
        float(measures.get("SliceThickness") or 1.0),
        hu,
    )


def _frames(ds: Dataset) -> list[_Frame]:
    """The slices of a classic CT image (one) or of an enhanced multi-frame CT (one per frame)."""
    if "PerFrameFunctionalGroupsSequence" not in ds:
        return [_frame(ds, ds, ds, ds, ds.pixel_array)] if "ImagePositionPatient" in ds else []
    pixels = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    out = []
    for frame, plane in zip(ds.PerFrameFunctionalGroupsSequence, pixels, strict=True):
        try:
            rescale = _item(ds, frame, "PixelValueTransformationSequence")
        except CtError:  # no rescale: stored values are HU
            rescale = Dataset()
        planes = (_item(ds, frame, name) for name in ("PlanePositionSequence", "PlaneOrientationSequence"))
        out.append(_frame(*planes, _item(ds, frame, "PixelMeasuresSequence"), rescale, plane))
    return out


def read_dicom_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(HU (z, y, x) float32, affine (index -> LPS mm)) of the single CT series in `folder`.

    Classic CT images (one slice per file) and enhanced multi-frame CT images both work.
    """
    frames, series = [], set()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = dcmread(path)
        except Exception:  # not DICOM: skip, a folder may hold other files
            continue
        if "PixelData" in ds:
            found = _frames(ds)
            frames += found
            series |= {str(ds.SeriesInstanceUID)} if found else set()
    if not frames:
        raise CtError(f"no CT slices with a position in {folder}")
    if len(series) > 1:
        raise CtError(f"{folder} holds several series; give one series folder")
    first = frames[0]
    if any(not np.allclose(f.orientation, first.orientation, atol=1e-4) for f in frames):
        raise CtError(f"{folder}: slices with different orientations (a scout or a gantry tilt?)")
    rows_dir, cols_dir = first.orientation
    normal = np.cross(rows_dir, cols_dir)
    frames.sort(key=lambda f: float(f.position_mm @ normal))
    positions = np.array([f.position_mm for f in frames])
    # One slice: its thickness is the only spacing there is.
    spacing = (
        np.linalg.norm(positions[-1] - positions[0]) / (len(frames) - 1) if len(frames) > 1 else first.thickness_mm
    )
    hu = np.stack([f.hu for f in frames]).astype(np.float32)
    row_mm, col_mm = first.pixel_mm
    affine = np.eye(4)
    # index (k, j, i) -> slice k along the normal, row j along the column direction, column i along rows.
    affine[:3, 0] = normal * spacing
    affine[:3, 1] = cols_dir * row_mm
    affine[:3, 2] = rows_dir * col_mm
    affine[:3, 3] = positions[0]
    return hu, affine


def read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(values (z, y, x) float32, affine (index -> LPS mm)) of a NIfTI volume (assumed HU)."""
    import nibabel

    image = nibabel.load(str(path))
    data = np.asarray(image.dataobj, dtype=np.float32)  # (i, j, k) in NIfTI order
    ras = image.affine
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras  # RAS+ (NIfTI) -> LPS (DICOM)
    # Reorder to (k, j, i) so the arrays follow our (z, y, x)-like convention.
    affine = lps[:, [2, 1, 0, 3]]
    return np.ascontiguousarray(data.transpose(2, 1, 0)), affine


def read_ct(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.is_dir():
        return read_dicom_series(path)
    if path.name.endswith((".nii", ".nii.gz")):
        return read_nifti(path)
    raise CtError(f"{path}: give a folder of CT slices or a .nii/.nii.gz file")


def remove_table(hu: np.ndarray) -> np.ndarray:
    """Keep the largest connected body (and what it encloses); everything else becomes air."""
    labels, count = ndimage.label(hu > BODY_HU)
    if count == 0:
        raise CtError(f"no voxel above {BODY_HU:g} HU: not a CT in HU")
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    body = labels == 1 + int(np.argmax(sizes))
    body = ndimage.binary_fill_holes(body)
    return np.where(body, hu, AIR_HU).astype(np.float32)


def resample(
    hu: np.ndarray, affine: np.ndarray, shape_zyx: tuple[int, int, int], voxel_mm: float, centre_mm: np.ndarray
) -> np.ndarray:
    """HU on an axis-aligned LPS grid of `shape_zyx` and `voxel_mm`, centred on `centre_mm` (trilinear)."""
    d, h, w = shape_zyx
    x, y, z = (axis_mm(n, voxel_mm) + c for n, c in zip((w, h, d), centre_mm, strict=True))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    world = np.stack([xx, yy, zz, np.ones_like(xx)], axis=-1)
    index = world @ np.linalg.inv(affine).T  # (d, h, w, 4): fractional (k, j, i)
    size = np.array(hu.shape, dtype=float)
    # Voxels as cells (align_corners=False), so a lone slice spans its own thickness, not all space.
    grid = (2.0 * index[..., [2, 1, 0]] + 1.0) / size[[2, 1, 0]] - 1.0  # grid_sample wants (i, j, k)
    sampled = F.grid_sample(
        torch.from_numpy(hu + 1000.0)[None, None], torch.from_numpy(grid.astype(np.float32))[None],
        mode="bilinear", padding_mode="zeros", align_corners=False,
    )  # fmt: skip
    return sampled[0, 0].numpy() - 1000.0  # outside the scan: air


def head_centre_mm(hu: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """LPS centroid of the body voxels: where the simulated isocentre goes."""
    index = np.argwhere(hu > BODY_HU).mean(axis=0)
    return (affine @ np.append(index, 1.0))[:3]


def prepare_ct(path: Path, shape_zyx: tuple[int, int, int], voxel_mm: float) -> np.ndarray:
    """A CT file or folder as table-free HU on the simulation grid, centred on the body."""
    hu, affine = read_ct(path)
    body = remove_table(hu)
    return resample(body, affine, shape_zyx, voxel_mm, head_centre_mm(body, affine))
