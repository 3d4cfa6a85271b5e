"""The output voxel grid: centred on the isocentre, axes along LPS, array order (z, y, x)."""

from __future__ import annotations

import numpy as np

# 160 voxels of 1.5 mm = 240 mm in every axis: an adult head is ~200 mm long (occiput to nose tip
# ~ 220 mm with the face), so this holds every head from newborn to 18 y with room for positioning.
OUTPUT_SHAPE = (160, 160, 160)
VOXEL_MM = 1.5


def axis_mm(n: int, voxel_mm: float) -> np.ndarray:
    """Voxel-centre coordinates along one axis, symmetric about 0."""
    return (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * voxel_mm
