"""Anatomical measurements on a label volume (z, y, x; LPS, isotropic voxels), as a clinician takes them.

Used to check the phantom against published norms and, later, to score reconstructions
(cephalic index error, intracranial volume error). Pure numpy.
"""

from __future__ import annotations

import numpy as np

from model.skull import Label

BONE = (Label.OUTER_TABLE, Label.DIPLOE, Label.INNER_TABLE)
VAULT = (*BONE, Label.SUTURE)
INTRACRANIAL = (Label.BRAIN, Label.CSF)
# Rays for contours and thickness.
CONTOUR_RAYS = 720
# Harmonics kept of a head contour's radius: enough for plagiocephalic and trigonocephalic shapes.
CONTOUR_HARMONICS = 16
RAY_STEP_VOXELS = 0.25


def occipitofrontal_slice(labels: np.ndarray) -> int:
    """The axial slice of the occipito-frontal circumference: the widest section of the vault."""
    return int(np.argmax(np.isin(labels, (*VAULT, *INTRACRANIAL)).sum(axis=(1, 2))))


def _contour_radii(mask: np.ndarray, centre: np.ndarray, voxel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(angles, outermost radius in mm of `mask` along rays from `centre` (row, col)) in one slice."""
    angles = np.linspace(0, 2 * np.pi, CONTOUR_RAYS, endpoint=False)
    steps = np.arange(0, max(mask.shape), RAY_STEP_VOXELS)
    rows = centre[0] + np.outer(np.sin(angles), steps)
    cols = centre[1] + np.outer(np.cos(angles), steps)
    inside_grid = (rows >= 0) & (rows < mask.shape[0] - 0.5) & (cols >= 0) & (cols < mask.shape[1] - 0.5)
    hits = np.zeros(rows.shape, dtype=bool)
    hits[inside_grid] = mask[np.rint(rows[inside_grid]).astype(int), np.rint(cols[inside_grid]).astype(int)]
    last = hits.shape[1] - 1 - np.argmax(hits[:, ::-1], axis=1)
    return angles, (steps[last] + 0.5) * voxel_mm  # to the outer edge of the last voxel


def head_circumference_mm(labels: np.ndarray, voxel_mm: float) -> float:
    """Perimeter of the head (over the scalp) in the occipito-frontal plane."""
    section = labels[occipitofrontal_slice(labels)] != Label.AIR
    centre = np.argwhere(section).mean(axis=0)
    angles, radii = _contour_radii(section, centre, voxel_mm)
    # Voxel steps make the raw contour zigzag (and too long): keep its smooth shape only.
    spectrum = np.fft.rfft(radii)
    spectrum[CONTOUR_HARMONICS + 1 :] = 0.0
    radii = np.fft.irfft(spectrum, n=len(radii))
    points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    return float(np.sum(np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1)))


def cephalic_index(labels: np.ndarray) -> float:
    """Maximum head breadth (x) over maximum head length (y), over the scalp, in the OFC plane."""
    section = labels[occipitofrontal_slice(labels)] != Label.AIR
    rows, cols = np.nonzero(section)
    return float((np.ptp(cols) + 1) / (np.ptp(rows) + 1))


def intracranial_volume_ml(labels: np.ndarray, voxel_mm: float) -> float:
    return float(np.isin(labels, INTRACRANIAL).sum() * voxel_mm**3 / 1000.0)


def calvarial_thickness_mm(labels: np.ndarray, voxel_mm: float, cone_deg: float = 25.0) -> float:
    """Median bone thickness of the parietal vault along rays from the brain's centre (upward cone).

    Counts bone (tables and diploe, not sutures) along each ray; rays crossing a suture or the
    fontanelle are dropped.
    """
    centre = np.argwhere(np.isin(labels, INTRACRANIAL)).mean(axis=0)  # (z, y, x)
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(400, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    up = directions[:, 0]  # z component in (z, y, x) order
    lateral = np.abs(directions[:, 2])
    # Parietal: upward and to either side, away from the midline sutures.
    keep = (up > np.cos(np.deg2rad(90 - cone_deg))) & (lateral > 0.35)
    steps = np.arange(0, max(labels.shape), RAY_STEP_VOXELS)
    thickness = []
    for d in directions[keep]:
        points = np.rint(centre + np.outer(steps, d)).astype(int)
        ok = np.all((points >= 0) & (points < labels.shape), axis=1)
        values = labels[tuple(points[ok].T)]
        if np.any(values == Label.SUTURE):
            continue
        # Rays leave the near-spherical vault close to its normal: no obliquity correction.
        thickness.append(np.isin(values, BONE).sum() * RAY_STEP_VOXELS * voxel_mm)
    return float(np.median(thickness))
