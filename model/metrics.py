"""Reconstruction metrics, with the window and data range each one uses stated. Pure numpy/scipy.

Volumes are HU arrays on one grid (z, y, x) with isotropic `voxel_mm`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Issue 5: PSNR and SSIM on HU clipped to [-1024, 2000]; bone at 300 HU.
HU_WINDOW = (-1024.0, 2000.0)
BONE_HU = 300.0
# SSIM as Wang et al. (2004): Gaussian window sigma 1.5 (voxels), K1 = 0.01, K2 = 0.03.
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _windowed(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    low, high = window
    return (np.clip(hu.astype(np.float64), low, high) - low) / (high - low)


def psnr_db(predicted: np.ndarray, truth: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> float:
    """PSNR in dB over the whole volume, both clipped to `window` (its width is the peak)."""
    mse = float(np.mean((_windowed(predicted, window) - _windowed(truth, window)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(predicted: np.ndarray, truth: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> float:
    """Mean 3D SSIM of the volumes clipped to `window` and scaled to [0, 1] (data range 1)."""
    x, y = _windowed(predicted, window), _windowed(truth, window)

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, SSIM_SIGMA, truncate=3.5)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    # Averaged where the whole window lies inside the volume (as scikit-image does).
    pad = int(3.5 * SSIM_SIGMA + 0.5)
    return float(index[pad:-pad, pad:-pad, pad:-pad].mean())


def mae_hu(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted.astype(np.float64) - truth)))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_distances_mm(a: np.ndarray, b: np.ndarray, voxel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each surface voxel of `a` to the surface of `b`, and back (voxel centres)."""
    surface_a, surface_b = _surface(a), _surface(b)
    if not surface_a.any() or not surface_b.any():
        raise ValueError("a mask is empty: surface distances are undefined")
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=voxel_mm)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=voxel_mm)
    return to_b[surface_a], to_a[surface_b]


def assd_and_hd95_mm(a: np.ndarray, b: np.ndarray, voxel_mm: float) -> tuple[float, float]:
    """Average symmetric surface distance (the mean over both surfaces' distances to the other) and
    95th-percentile Hausdorff distance (the larger directed 95th percentile), from one pair of
    distance transforms."""
    ab, ba = surface_distances_mm(a, b, voxel_mm)
    return float((ab.sum() + ba.sum()) / (len(ab) + len(ba))), float(max(np.percentile(ab, 95), np.percentile(ba, 95)))


def assd_mm(a: np.ndarray, b: np.ndarray, voxel_mm: float) -> float:
    return assd_and_hd95_mm(a, b, voxel_mm)[0]


def hd95_mm(a: np.ndarray, b: np.ndarray, voxel_mm: float) -> float:
    return assd_and_hd95_mm(a, b, voxel_mm)[1]


# Measurements on HU volumes, so a reconstruction and its truth are measured the same way.
TISSUE_HU = -400.0  # head (skin and below) vs air
# The cavity is soft tissue up to the bone threshold: its wall is where bone begins, as for Dice.
# (Stopping at 100 HU, brain-like values only, dropped the rim a blurred inner table leaves between
# 100 and 300 HU: the truth pooled to a 3 mm grid then read 21 % off, a measure of blur not volume.)
CAVITY_LOW_HU = -100.0  # air (sinuses, airways) stays out
# A voxel of the cavity sees bone along at least this many of the 6 axis directions: one may pass
# through a fontanelle, a suture cut lengthwise or the foramen magnum.
ENCLOSED_DIRECTIONS = 5


def intracranial_mask(hu: np.ndarray, bone_hu: float = BONE_HU) -> np.ndarray:
    """The cranial cavity: soft tissue enclosed by bone along >= ENCLOSED_DIRECTIONS of the 6 axis
    directions, kept as the largest connected region (the face's cavities are walled off by the
    skull base). No closed ring is needed, so open sutures and fontanelles do not break it."""
    bone = hu > bone_hu
    seen = np.zeros(hu.shape, dtype=np.uint8)
    for axis in range(3):
        ahead = np.cumsum(bone, axis=axis) > 0  # bone at or before this voxel along the axis
        behind = np.flip(np.cumsum(np.flip(bone, axis), axis=axis) > 0, axis)
        seen += ahead.astype(np.uint8) + behind.astype(np.uint8)
    candidate = (seen >= ENCLOSED_DIRECTIONS) & (hu > CAVITY_LOW_HU) & ~bone
    labels, count = ndimage.label(candidate)
    if count == 0:
        return candidate
    sizes = ndimage.sum_labels(candidate, labels, index=np.arange(1, count + 1))
    return labels == 1 + int(np.argmax(sizes))


def intracranial_volume_ml(hu: np.ndarray, voxel_mm: float) -> float:
    return float(intracranial_mask(hu).sum() * voxel_mm**3 / 1000.0)


def cephalic_index(hu: np.ndarray) -> float:
    """Head breadth over length (over the skin) in the axial slice where the cavity is widest."""
    cavity = intracranial_mask(hu)
    if not cavity.any():
        raise ValueError("no closed skull found: the cephalic index is undefined")
    section = hu[int(np.argmax(cavity.sum(axis=(1, 2))))] > TISSUE_HU
    rows, cols = np.nonzero(section)
    return float((np.ptp(cols) + 1) / (np.ptp(rows) + 1))


# Suture patency: a suture reads open when its band's median HU lies below the midpoint between the
# bone beside it (within SUTURE_NEAR_VOXELS) and fibrous tissue. The band's location comes from the
# anatomy (model/skull.py suture_regions), so a reconstruction is read where the suture runs. Where
# the bone beside it does not read as bone (median below BONE_HU), the suture cannot be read at all.
SUTURE_TISSUE_HU = 60.0
SUTURE_NEAR_VOXELS = 3


def suture_open(hu: np.ndarray, region: np.ndarray, bone_beside: np.ndarray) -> bool | None:
    """Whether the suture in `region` reads open in `hu` (None: unreadable, no bone around it);
    `bone_beside` is the true bone around it."""
    index = np.argwhere(region)
    low = np.maximum(index.min(axis=0) - SUTURE_NEAR_VOXELS, 0)
    high = index.max(axis=0) + SUTURE_NEAR_VOXELS + 1
    box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    near = ndimage.binary_dilation(region[box], iterations=SUTURE_NEAR_VOXELS) & bone_beside[box] & ~region[box]
    if not near.any():
        raise ValueError("no bone beside the suture: its patency is undefined")
    beside_hu = float(np.median(hu[box][near]))
    if beside_hu < BONE_HU:
        return None
    return float(np.median(hu[region])) < (beside_hu + SUTURE_TISSUE_HU) / 2.0
