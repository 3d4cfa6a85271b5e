"""From a radiograph to the network's input: robust scaling, a fixed size, its projection matrix.

Pure numpy. The projection matrix is rescaled with the image so the geometry stays exact. The
service and the training data go through `view_input`, so the network sees the same thing in both.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from model.geometry import STANDARD_ROOM, RoomDefaults, projection_matrix, rescale_projection
from model.radiograph import RadiographError, display_values, read_view, view_family

INPUT_SHAPE_PX = (256, 256)
# Percentile scaling: the darkest 1 % (air, open field) -> 0, the brightest 0.5 % (petrous bone,
# teeth, markers) -> 1. Percentiles, not min/max, so burnt-in labels and dead pixels do not rule.
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.5


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix averaging input pixels over each output pixel's footprint (box filter)."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    left = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, left + 1) - np.maximum(lo, left), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def resample_area(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-average resampling to `shape` (exact for any ratio, down or up)."""
    rows = _area_weights(image.shape[0], shape[0])
    cols = _area_weights(image.shape[1], shape[1])
    return rows @ image @ cols.T


def normalise(values: np.ndarray) -> np.ndarray:
    low, high = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:
        high = low + 1.0
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def preprocess(values: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image (1, 1, 256, 256) float32 in [0, 1], projection matrix (3, 4) float32 for that image)."""
    image = normalise(resample_area(values.astype(np.float64), INPUT_SHAPE_PX))
    scaled = rescale_projection(matrix, values.shape, INPUT_SHAPE_PX)
    return image[None, None].astype(np.float32), scaled.astype(np.float32)


def view_input(
    ds: Dataset, expected_family: str, room: RoomDefaults = STANDARD_ROOM
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(image, matrix, geometry notes) of one view, as the network takes it; refuses a view of the
    wrong family ("pa" or "lateral"); `room` fills missing distances."""
    view, geometry, notes = read_view(ds, room)
    if view_family(view) != expected_family:
        raise RadiographError(f"the {expected_family} input is a {view} view")
    image, matrix = preprocess(display_values(ds), projection_matrix(geometry))
    return image, matrix, notes
