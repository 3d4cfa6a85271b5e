"""A fast PA + lateral test pair with its ground truth, from the analytic phantom (model/phantom.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from model.dx_writer import presentation_pixels, radiograph_dataset, study_for_seed
from model.geometry import GeometryTags, ViewGeometry, resolve_view
from model.grid import OUTPUT_SHAPE, VOXEL_MM, axis_mm
from model.phantom import head, line_integrals, rasterise_hu

# A skull room: 100 cm SID, isocentre 14 cm before a 512 x 512 panel of 0.5 mm (25.6 cm square).
SIM_SID_MM = 1000.0
SIM_SOD_MM = 860.0
SIM_DETECTOR_PX = 512
SIM_PITCH_MM = 0.5


@dataclass(frozen=True)
class SimulatedPair:
    pa: Dataset
    lateral: Dataset
    truth_hu: np.ndarray  # (z, y, x) on the output grid
    voxel_mm: float


def sim_geometry(view: str) -> ViewGeometry:
    return resolve_view(
        GeometryTags(
            view=view,
            rows=SIM_DETECTOR_PX,
            columns=SIM_DETECTOR_PX,
            sid_mm=SIM_SID_MM,
            source_to_patient_mm=None,
            magnification=SIM_SID_MM / SIM_SOD_MM,
            imager_pitch_mm=(SIM_PITCH_MM, SIM_PITCH_MM),
        )
    )


def simulate_pair(age_y: float, seed: int, monochrome1: bool = False) -> SimulatedPair:
    rng = np.random.default_rng(seed)
    parts = head(age_y, seed)
    study = study_for_seed(seed)
    datasets = []
    for number, view in enumerate(("PA", "LL"), start=1):
        g = sim_geometry(view)
        pixels = presentation_pixels(line_integrals(parts, g), rng, monochrome1)
        datasets.append(radiograph_dataset(pixels, g, study, number, monochrome1))
    axes = [axis_mm(n, VOXEL_MM) for n in OUTPUT_SHAPE]
    truth = rasterise_hu(parts, axes[2], axes[1], axes[0])
    return SimulatedPair(datasets[0], datasets[1], truth, VOXEL_MM)
