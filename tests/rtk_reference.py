"""RTK (itk-rtk) as an independent reference: geometry, Joseph forward projection, back-projection.

Our operators take 3x4 matrices mapping LPS mm to detector pixels; RTK's own matrices map mm to
detector mm with w = z - sod < 0, so they are negated (the same projective map) and converted to
pixel indices with the projection stack's origin and spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import itk
import numpy as np
from itk import RTK as rtk

IMAGE = itk.Image[itk.F, 3]


@dataclass
class RtkSetup:
    geometry: object
    detector_px: int
    pitch_mm: float
    volume_px: int
    voxel_mm: float

    @property
    def detector_origin_mm(self) -> float:
        return -(self.detector_px - 1) / 2 * self.pitch_mm

    @property
    def volume_origin_mm(self) -> float:
        return -(self.volume_px - 1) / 2 * self.voxel_mm

    @property
    def axis_mm(self) -> np.ndarray:
        return self.volume_origin_mm + self.voxel_mm * np.arange(self.volume_px)

    def matrices(self) -> np.ndarray:
        """Our (views, 3, 4) pixel matrices for RTK's geometry."""
        o, s = self.detector_origin_mm, self.pitch_mm
        to_pixels = np.array([[1 / s, 0, -o / s], [0, 1 / s, -o / s], [0, 0, 1]])
        count = len(self.geometry.GetGantryAngles())
        return np.stack([-to_pixels @ np.array(self.geometry.GetMatrix(i)) for i in range(count)])

    def image(self, array: np.ndarray, origin_mm: float, spacing_mm: float, third_spacing: float | None = None):  # type: ignore[no-untyped-def]
        image = itk.image_from_array(np.ascontiguousarray(array, dtype=np.float32))
        image.SetOrigin([origin_mm, origin_mm, origin_mm if third_spacing is None else 0.0])
        image.SetSpacing([spacing_mm, spacing_mm, third_spacing or spacing_mm])
        return image

    def joseph(self, volume_zyx: np.ndarray) -> np.ndarray:
        """RTK's Joseph forward projection of `volume_zyx` (per mm): (views, rows, columns)."""
        views = len(self.geometry.GetGantryAngles())
        empty = np.zeros((views, self.detector_px, self.detector_px), dtype=np.float32)
        projector = rtk.JosephForwardProjectionImageFilter[IMAGE, IMAGE].New()
        stack = self.image(empty, self.detector_origin_mm, self.pitch_mm, third_spacing=1.0)
        volume = self.image(volume_zyx, self.volume_origin_mm, self.voxel_mm)
        projector.SetInput(0, stack)
        projector.SetInput(1, volume)
        projector.SetGeometry(self.geometry)
        projector.Update()
        return itk.array_from_image(projector.GetOutput()).copy()


def circular(sod_mm: float, sid_mm: float, angles_deg: list[float], **sizes: float) -> RtkSetup:
    geometry = rtk.ThreeDCircularProjectionGeometry.New()
    for angle in angles_deg:
        geometry.AddProjection(sod_mm, sid_mm, angle)
    return RtkSetup(geometry=geometry, **sizes)  # type: ignore[arg-type]


def back_projection(setup: RtkSetup, projections: np.ndarray) -> np.ndarray:
    """RTK's voxel-driven back-projection of (views, rows, columns) onto a zero volume."""
    stack = setup.image(projections, setup.detector_origin_mm, setup.pitch_mm, third_spacing=1.0)
    volume = setup.image(np.zeros((setup.volume_px,) * 3, np.float32), setup.volume_origin_mm, setup.voxel_mm)
    back_projector = rtk.BackProjectionImageFilter[IMAGE, IMAGE].New()
    back_projector.SetInput(0, volume)
    back_projector.SetInput(1, stack)
    back_projector.SetGeometry(setup.geometry)
    back_projector.Update()
    return itk.array_from_image(back_projector.GetOutput()).copy()
