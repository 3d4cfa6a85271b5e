"""Benchmark of the data engine: prints how fast heads and radiograph pairs are made. Asserts nothing.

Two rates: a full `psct simulate` pair (panel-resolution DICOM, vendor processing) and the
training-resolution path (phantom on the serving grid, mass line integrals straight onto a 256^2
detector, the size the network sees).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.acquisition import random_pair  # noqa: E402
from model.dx_writer import study_for_seed  # noqa: E402
from model.geometry import projection_matrix, rescale_projection  # noqa: E402
from model.grid import OUTPUT_SHAPE, VOXEL_MM  # noqa: E402
from model.preprocess import INPUT_SHAPE_PX  # noqa: E402
from model.simulator import mass_integrals, nominal_geometry, simulate_radiographs  # noqa: E402
from model.skull import parameters, phantom  # noqa: E402
from model.xray import basis_densities  # noqa: E402

HEADS = 4


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} (threads "
          f"{torch.get_num_threads()})")  # fmt: skip
    phantom_s, training_s, full_s = [], [], []
    for seed in range(HEADS):
        start = time.perf_counter()
        head = phantom(parameters(2.0 + 4 * seed, "normal", seed), OUTPUT_SHAPE, VOXEL_MM)
        phantom_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        soft, bone = (torch.tensor(v, dtype=torch.float32) for v in basis_densities(head.hu))
        for setup in random_pair(np.random.default_rng(seed)):
            g = nominal_geometry(setup)
            matrix = rescale_projection(projection_matrix(g), setup.shape_px, INPUT_SHAPE_PX)
            mass_integrals(soft, bone, VOXEL_MM, matrix, INPUT_SHAPE_PX)
        training_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        simulate_radiographs(head.hu, VOXEL_MM, study_for_seed(seed), seed)
        full_s.append(time.perf_counter() - start)
    phantom_t, training_t, full_t = (float(np.median(v)) for v in (phantom_s, training_s, full_s))
    print(f"phantom on the serving grid {OUTPUT_SHAPE} at {VOXEL_MM} mm: {phantom_t:.2f} s (median of {HEADS})")
    print(f"training-resolution pair (2 x 2 materials, {INPUT_SHAPE_PX[0]}^2): {training_t:.2f} s "
          f"-> {60 / (phantom_t + training_t):.1f} heads+pairs per minute")  # fmt: skip
    print(f"full psct-simulate pair (panel resolution, physics, vendor look): {full_t:.2f} s "
          f"-> {60 / (phantom_t + full_t):.1f} per minute")  # fmt: skip


if __name__ == "__main__":
    main()
