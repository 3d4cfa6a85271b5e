"""Radiograph pair -> model inputs -> HU volume. No I/O: datasets in, arrays out."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
from pydicom.dataset import Dataset

from model.geometry import STANDARD_ROOM, RoomDefaults
from model.preprocess import view_input
from worker.runtime import ModelRuntime

Stage = Callable[[str], AbstractContextManager[object]]


def reconstruct(
    pa: Dataset,
    lateral: Dataset,
    runtime: ModelRuntime,
    progress: Callable[[float], None] = lambda _: None,
    stage: Stage = lambda _: nullcontext(),
    room: RoomDefaults = STANDARD_ROOM,
) -> tuple[np.ndarray, list[str]]:
    """(HU volume (z, y, x), geometry notes) for one pair; `stage(name)` brackets each step (timing);
    `room` fills missing distances."""
    with stage("decode"):
        pa_image, pa_matrix, pa_notes = view_input(pa, "pa", room)
        lat_image, lat_matrix, lat_notes = view_input(lateral, "lateral", room)
    progress(0.3)
    with stage("inference"):
        volume = runtime.run(
            {"pa": pa_image, "lateral": lat_image, "pa_matrix": pa_matrix, "lateral_matrix": lat_matrix}
        )
    progress(0.6)
    return volume, pa_notes + lat_notes
