"""Radiograph pair -> model inputs -> HU volume. No I/O: datasets in, arrays out."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydicom.dataset import Dataset

from model.geometry import projection_matrix
from model.preprocess import preprocess
from model.radiograph import RadiographError, display_values, read_view, view_family
from worker.runtime import ModelRuntime


def prepare(ds: Dataset, expected_family: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(image, matrix, notes) of one view; refuses a view of the wrong family."""
    view, geometry, notes = read_view(ds)
    if view_family(view) != expected_family:
        raise RadiographError(f"the {expected_family} input is a {view} view")
    image, matrix = preprocess(display_values(ds), projection_matrix(geometry))
    return image, matrix, notes


def reconstruct(
    pa: Dataset, lateral: Dataset, runtime: ModelRuntime, progress: Callable[[float], None] = lambda _: None
) -> tuple[np.ndarray, list[str]]:
    """(HU volume (z, y, x), geometry notes) for one pair."""
    pa_image, pa_matrix, pa_notes = prepare(pa, "pa")
    lat_image, lat_matrix, lat_notes = prepare(lateral, "lateral")
    progress(0.3)
    volume = runtime.run({"pa": pa_image, "lateral": lat_image, "pa_matrix": pa_matrix, "lateral_matrix": lat_matrix})
    progress(0.6)
    return volume, pa_notes + lat_notes
