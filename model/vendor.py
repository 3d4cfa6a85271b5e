"""The vendor side of a radiograph: from raw detector signal to the stored, processed image.

Log conversion, multi-scale-like contrast equalisation (unsharp masking), windowing, gamma, bit
depth and photometric interpretation vary between manufacturers; the ranges are randomised so the
model does not learn one vendor's look (model/acquisition.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.xray import gaussian_blur


@dataclass(frozen=True)
class Presentation:
    unsharp_amount: float  # 0 = none; ~0.5-2 in commercial "equalisation" processing
    unsharp_sigma_mm: float  # scale of the large-area background that is flattened
    gamma: float  # > 1 darkens mid-tones
    low_percentile: float
    high_percentile: float
    bits: int  # 12-16 stored bits
    monochrome1: bool


def present(raw: np.ndarray, flat: float, pitch_mm: float, look: Presentation) -> np.ndarray:
    """Stored pixel values (unsigned ints in `bits`), bone bright for MONOCHROME2, inverted for 1."""
    attenuation = -np.log(np.clip(raw, flat * 1e-6, None) / flat)  # log conversion: bone high
    background = gaussian_blur(attenuation, look.unsharp_sigma_mm / pitch_mm)
    equalised = attenuation + look.unsharp_amount * (attenuation - background)
    low, high = np.percentile(equalised, [look.low_percentile, look.high_percentile])
    scaled = np.clip((equalised - low) / max(high - low, 1e-9), 0.0, 1.0) ** look.gamma
    top = (1 << look.bits) - 1
    stored = np.rint(scaled * top).astype(np.uint16)
    return top - stored if look.monochrome1 else stored
