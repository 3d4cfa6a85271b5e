"""Preview PNG: axial, coronal and sagittal mid-slices in a bone window, side by side."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

# Bone window (level 500 HU, width 2000 HU), the usual skull CT bone setting.
BONE_LEVEL_HU = 500.0
BONE_WIDTH_HU = 2000.0
# Height of the caption strip under the panels (PIL's default bitmap font is 11 px high).
CAPTION_PX = 16


def window_bone(slice_hu: np.ndarray) -> np.ndarray:
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


def preview_png(volume_zyx: np.ndarray, caption: str) -> bytes:
    """The three panels with `caption` (model and research notice) burnt in below them."""
    panels = [window_bone(s) for s in mid_slices(volume_zyx)]
    height = max(p.shape[0] for p in panels)
    strip = np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 4))) for p in panels], axis=1)
    image = Image.fromarray(np.pad(strip, ((0, CAPTION_PX), (0, 0))))
    ImageDraw.Draw(image).text((4, height + 3), caption, fill=255)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def caption_for(model: dict) -> str:
    return f"{model.get('name')} {model.get('version')} - research reconstruction, NOT FOR DIAGNOSTIC USE"
