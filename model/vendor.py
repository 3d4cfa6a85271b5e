"""The vendor side of a radiograph: from raw detector signal to the stored, processed image.

Log conversion, multi-scale-like contrast equalisation (unsharp masking), windowing, gamma, bit
depth and photometric interpretation vary between manufacturers; the ranges are randomised so the
model does not learn one vendor's look (model/acquisition.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    storage: str = "DX"  # the object the room sends: DX (for presentation), DX-processing or CR
    relationship: str = "LOG"  # PixelIntensityRelationship: LOG (bone bright) or LIN (raw signal)


# A "for processing" image is the detector's signal before the vendor's look: no equalisation,
# no gamma, full range; stored log-converted or linear.
def for_processing(look: Presentation, linear: bool) -> Presentation:
    return replace(look, unsharp_amount=0.0, gamma=1.0, low_percentile=0.0, high_percentile=100.0,
                   monochrome1=False, storage="DX-processing", relationship="LIN" if linear else "LOG")  # fmt: skip


def present(raw: np.ndarray, flat: float, pitch_mm: float, look: Presentation) -> np.ndarray:
    """Stored pixel values (unsigned ints in `bits`), bone bright for MONOCHROME2, inverted for 1."""
    top = (1 << look.bits) - 1
    if look.relationship == "LIN":  # raw signal, proportional to the photons: bone dark, air at the top
        return np.rint(np.clip(raw / flat, 0.0, 1.0) * top).astype(np.uint16)
    attenuation = -np.log(np.clip(raw, flat * 1e-6, None) / flat)  # log conversion: bone high
    background = gaussian_blur(attenuation, look.unsharp_sigma_mm / pitch_mm)
    equalised = attenuation + look.unsharp_amount * (attenuation - background)
    low, high = np.percentile(equalised, [look.low_percentile, look.high_percentile])
    scaled = np.clip((equalised - low) / max(high - low, 1e-9), 0.0, 1.0) ** look.gamma
    stored = np.rint(scaled * top).astype(np.uint16)
    return top - stored if look.monochrome1 else stored
