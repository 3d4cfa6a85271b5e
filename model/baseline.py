"""PSCT physics baseline: two views back-projected into an elliptical visual hull. No learned weights.

What two radiographs say on their own, with one stated shape prior, so the learned PSCT-Net has a
floor to beat; it also fixes the runtime interface (inputs, output grid) the learned model keeps.

Two silhouettes carve a quadrilateral in every axial plane (a two-view visual hull); a head's cross
section is closer to the ellipse inscribed in it. So each view's silhouette gives, per detector
line, every pixel's normalised position t in [-1, 1] between the silhouette's edges; back-projected,
t_pa^2 + t_lateral^2 <= 1 is that ellipse. HU: air outside; scalp, then a bone shell whose density
follows the back-projected radiographs, then brain-like tissue inside. A model, not a measurement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.grid import axis_mm
from model.projector import back_project

# Preprocessed inputs are in [0, 1] (model/preprocess.py): air ~ 0, dense bone ~ 1. Soft tissue of
# a child's head on a skull radiograph lies well above 0.1 of that range.
SILHOUETTE_THRESHOLD = 0.1
# |normalised position| given to pixels outside the silhouette (anything > 1 is outside the ellipse).
OUTSIDE_T = 2.0
# Bilinear weights sum to 1 inside the detector, less within one pixel of its border.
COVERAGE_TOLERANCE = 1e-3
# Steepness of the hull edge in units of the normalised radius squared.
HULL_SHARPNESS = 40.0
# HU levels (typical CT values: air -1000, scalp ~ +40, brain ~ +30, cortical bone ~ +1500).
AIR_HU = -1000.0
SOFT_HU = 40.0
BRAIN_HU = 30.0
BONE_HU = 1500.0
# Scalp 3-6 mm and calvarium 2-6 mm thick from infancy to adulthood (issue 4's growth norms).
SCALP_MM = 4.5
SHELL_MM = 4.5


def _chord_position(silhouette: torch.Tensor, dim: int) -> torch.Tensor:
    """Each pixel's position between the silhouette's first and last pixel along `dim`, in [-1, 1]."""
    n = silhouette.shape[dim]
    shape = [1, 1, 1, 1]
    shape[dim] = n
    index = torch.arange(n, dtype=silhouette.dtype, device=silhouette.device).reshape(shape)
    inside = silhouette > 0.5
    first = torch.amin(torch.where(inside, index, torch.full_like(silhouette, float(n))), dim=dim, keepdim=True)
    last = torch.amax(torch.where(inside, index, torch.full_like(silhouette, -1.0)), dim=dim, keepdim=True)
    t = (2.0 * index - first - last) / torch.clamp(last - first, min=1.0)
    # Outside keeps its side (-2 left, +2 right), so bilinear sampling across an edge never passes
    # through the middle of the chord.
    return torch.where(inside, t, torch.where(t < 0, -OUTSIDE_T, OUTSIDE_T) * torch.ones_like(t))


def _erode(mask: torch.Tensor, radius_px: int) -> torch.Tensor:
    size = 2 * radius_px + 1
    return 1.0 - F.max_pool3d(1.0 - mask, size, stride=1, padding=radius_px)


class PhysicsBaseline(nn.Module):
    name = "psct-physics-baseline"

    def __init__(self, shape_zyx: tuple[int, int, int], voxel_mm: float) -> None:
        super().__init__()
        d, h, w = shape_zyx
        self.register_buffer("x_mm", torch.tensor(axis_mm(w, voxel_mm), dtype=torch.float32))
        self.register_buffer("y_mm", torch.tensor(axis_mm(h, voxel_mm), dtype=torch.float32))
        self.register_buffer("z_mm", torch.tensor(axis_mm(d, voxel_mm), dtype=torch.float32))
        self.scalp_px = max(1, round(SCALP_MM / voxel_mm))
        self.shell_px = max(1, round(SHELL_MM / voxel_mm))

    def _lift(self, image: torch.Tensor, matrix: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Back-projected (image, chord position across the axial plane, detector coverage)."""
        silhouette = (image > SILHOUETTE_THRESHOLD).to(image.dtype)
        # The detector axis whose pixels move with z (|dv/dz| vs |du/dz|) runs head-feet; chords are
        # taken along the other one, which lies in the axial plane.
        rows_run_head_feet = torch.abs(matrix[1, 2]) >= torch.abs(matrix[0, 2])
        t = torch.where(rows_run_head_feet, _chord_position(silhouette, 3), _chord_position(silhouette, 2))
        coverage = torch.ones_like(image)
        lifted = back_project(torch.cat([image, t, coverage], dim=1), matrix[None], self.x_mm, self.y_mm, self.z_mm)
        return lifted[:, :1], lifted[:, 1:2], lifted[:, 2:]

    def forward(
        self, pa: torch.Tensor, lateral: torch.Tensor, pa_matrix: torch.Tensor, lateral_matrix: torch.Tensor
    ) -> torch.Tensor:
        density_pa, t_pa, seen_pa = self._lift(pa, pa_matrix)
        density_lat, t_lat, seen_lat = self._lift(lateral, lateral_matrix)
        # A voxel that is not fully inside both detectors' fields is not known to be head.
        seen = (seen_pa > 1.0 - COVERAGE_TOLERANCE) & (seen_lat > 1.0 - COVERAGE_TOLERANCE)
        hull = torch.sigmoid((1.0 - t_pa**2 - t_lat**2) * HULL_SHARPNESS)
        hull = torch.where(seen, hull, torch.zeros_like(hull))
        below_scalp = _erode(hull, self.scalp_px)
        brain = _erode(below_scalp, self.shell_px)
        shell = torch.clamp(below_scalp - brain, 0.0, 1.0)
        density = torch.sqrt(torch.clamp(density_pa * density_lat, min=0.0))
        hu = AIR_HU + hull * (SOFT_HU - AIR_HU) + brain * (BRAIN_HU - SOFT_HU)
        return hu + shell * (0.5 + 0.5 * density) * (BONE_HU - SOFT_HU)
