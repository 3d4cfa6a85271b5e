"""Preview PNG: axial, coronal and sagittal mid-slices in a bone window, side by side."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Bone window (level 500 HU, width 2000 HU), the usual skull CT bone setting.
BONE_LEVEL_HU = 500.0
BONE_WIDTH_HU = 2000.0


def _window(slice_hu: np.ndarray) -> np.ndarray:
    low = BONE_LEVEL_HU - BONE_WIDTH_HU / 2
    return (np.clip((slice_hu - low) / BONE_WIDTH_HU, 0.0, 1.0) * 255).astype(np.uint8)


def mid_slices(volume_zyx: np.ndarray) -> list[np.ndarray]:
    """Radiological display: axial seen from the feet, coronal and sagittal with the head up."""
    d, h, w = volume_zyx.shape
    # LPS grid: index 0 is anterior (y) and patient right (x), so only z needs flipping.
    axial = volume_zyx[d // 2]  # anterior up, patient right on the left
    coronal = volume_zyx[::-1, h // 2, :]  # head up, patient right on the left
    sagittal = volume_zyx[::-1, :, w // 2]  # head up, anterior on the left
    return [axial, coronal, sagittal]


def preview_png(volume_zyx: np.ndarray) -> bytes:
    panels = [_window(s) for s in mid_slices(volume_zyx)]
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4))) for p in panels]
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate(padded, axis=1)).save(buffer, format="PNG")
    return buffer.getvalue()
