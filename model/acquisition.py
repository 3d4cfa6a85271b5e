"""Domain randomisation of one radiograph pair: room geometry, beam, detector, degradations, look.

Ranges follow real skull and cephalometric practice; every range is named here so the README can
list them (and a reviewer can question them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from model.vendor import Presentation, for_processing
from model.xray import Acquisition, Beam, Detector

SID_RANGE_MM = (1000.0, 1800.0)  # skull units at 100-115 cm; cephalostats at 152.4-180 cm
CEPHALOSTAT_SID_MM = 1524.0  # 60 in, the classic lateral cephalogram distance
CEPHALOSTAT_PROBABILITY = 0.3
ISOCENTRE_TO_DETECTOR_MM = (100.0, 180.0)  # head centre to receptor: half a head plus bucky gap
PANELS_MM = ((240.0, 300.0), (350.0, 430.0), (430.0, 430.0))  # common flat-panel / cassette sizes
PITCHES_MM = (0.1, 0.125, 0.139, 0.143, 0.148, 0.15, 0.16, 0.175, 0.2)
KVP_RANGE = (60.0, 85.0)
FILTRATION_MM_AL = (2.5, 4.0)  # total filtration; >= 2.5 mm Al is the regulatory minimum
MAS_RANGE = (2.0, 12.0)  # pediatric skull techniques
SPR_RANGE = (0.1, 0.5)  # scatter-to-primary ratio behind a head with a grid
SCATTER_SIGMA_MM = (20.0, 60.0)
BLUR_SIGMA_MM = (0.08, 0.3)
HEEL_GRADIENT = (-0.15, 0.15)
# What the room sends (CONTRACT.md accepts all three): DX for presentation, CR, DX for processing
# (half of those stored linear, half log-converted). Drawn per visit: one room, one object type.
STORAGE_PROBABILITIES = {"DX": 0.6, "CR": 0.2, "DX-processing": 0.2}
POSE_ERROR_DEG = 2.0  # the head turns by up to this much (each axis) between the two exposures
UNSHARP_AMOUNT = (0.0, 4.0)  # multi-scale equalisation of skull studies flattens the soft-tissue dome strongly
UNSHARP_SIGMA_MM = (5.0, 40.0)
GAMMA_RANGE = (0.7, 1.4)
BITS = (12, 14, 16)


@dataclass(frozen=True)
class ViewSetup:
    view: str  # PA or LL
    sid_mm: float
    sod_mm: float
    pitch_mm: float
    shape_px: tuple[int, int]  # rows, columns
    beam: Beam
    detector: Detector
    acquisition: Acquisition
    look: Presentation
    pose_deg: tuple[float, float, float]  # head rotation at this exposure vs the nominal geometry


def _view(rng: np.random.Generator, view: str, kvp: float | None, cephalostat: bool, pose: bool) -> ViewSetup:
    sid = CEPHALOSTAT_SID_MM if cephalostat else float(rng.uniform(*SID_RANGE_MM))
    rows_mm, cols_mm = PANELS_MM[rng.integers(len(PANELS_MM))]
    pitch = float(rng.choice(PITCHES_MM))
    return ViewSetup(
        view=view,
        sid_mm=sid,
        sod_mm=sid - float(rng.uniform(*ISOCENTRE_TO_DETECTOR_MM)),
        pitch_mm=pitch,
        shape_px=(int(rows_mm / pitch), int(cols_mm / pitch)),
        beam=Beam(
            kvp=kvp or float(rng.uniform(*KVP_RANGE)),
            filtration_mm_al=float(rng.uniform(*FILTRATION_MM_AL)),
            mas=float(rng.uniform(*MAS_RANGE)),
        ),  # fmt: skip
        detector=Detector(pitch_mm=pitch),
        acquisition=Acquisition(
            scatter_to_primary=float(rng.uniform(*SPR_RANGE)),
            scatter_sigma_mm=float(rng.uniform(*SCATTER_SIGMA_MM)),
            blur_sigma_mm=float(rng.uniform(*BLUR_SIGMA_MM)),
            heel_gradient=float(rng.uniform(*HEEL_GRADIENT)),
        ),
        look=Presentation(
            unsharp_amount=float(rng.uniform(*UNSHARP_AMOUNT)),
            unsharp_sigma_mm=float(rng.uniform(*UNSHARP_SIGMA_MM)),
            gamma=float(rng.uniform(*GAMMA_RANGE)),
            low_percentile=float(rng.uniform(0.0, 1.0)),
            high_percentile=float(rng.uniform(99.0, 100.0)),
            bits=int(rng.choice(BITS)),
            monochrome1=bool(rng.random() < 0.5),
        ),
        pose_deg=tuple(rng.uniform(-POSE_ERROR_DEG, POSE_ERROR_DEG, 3)) if pose else (0.0, 0.0, 0.0),  # type: ignore[arg-type]
    )


def random_pair(
    rng: np.random.Generator, kvp: float | None = None, storage: str | None = None
) -> tuple[ViewSetup, ViewSetup]:
    """A PA and a left-lateral exposure of one visit; the lateral carries the pose error."""
    cephalostat = bool(rng.random() < CEPHALOSTAT_PROBABILITY)
    views = _view(rng, "PA", kvp, cephalostat, pose=False), _view(rng, "LL", kvp, cephalostat, pose=True)
    if storage is None:  # drawn after the views, so a given seed keeps its rooms and looks
        storage = str(rng.choice(list(STORAGE_PROBABILITIES), p=list(STORAGE_PROBABILITIES.values())))
    linear = bool(rng.random() < 0.5)
    return tuple(replace(v, look=_stored_as(v.look, storage, linear)) for v in views)  # type: ignore[return-value]


def _stored_as(look: Presentation, storage: str, linear: bool) -> Presentation:
    if storage == "DX-processing":
        return for_processing(look, linear)
    if storage not in STORAGE_PROBABILITIES:
        raise ValueError(f"storage {storage!r} unknown: one of {', '.join(STORAGE_PROBABILITIES)}")
    return replace(look, storage=storage)
