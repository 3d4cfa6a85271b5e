"""PSCT-Net: 2D view encoders, geometry-aware lifting by back-projection, attention-guided 3D refinement.

Each view's feature maps are back-projected into one coarse 3D grid with that study's projection
matrices (model inputs, as for the physics baseline), so a voxel only sees the detector pixels its
rays hit. A 3D U-Net with attention gates on its skip connections (Oktay et al., 2018) fuses both
views and corrects what two projections cannot pin down. The coarse HU volume is upsampled to the
serving grid inside the network, so the exported ONNX file keeps the baseline's interface.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.grid import axis_mm
from model.preprocess import INPUT_SHAPE_PX
from model.projector import back_project

# The network predicts HU / HU_SCALE: unit-sized targets for the optimiser (air -1, bone ~1-2).
HU_SCALE = 1000.0


def conv2d_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.1),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.1),
    )  # fmt: skip


def conv3d_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1), nn.InstanceNorm3d(c_out, affine=True), nn.LeakyReLU(0.1),
        nn.Conv3d(c_out, c_out, 3, padding=1), nn.InstanceNorm3d(c_out, affine=True), nn.LeakyReLU(0.1),
    )  # fmt: skip


class ViewEncoder(nn.Module):
    """(1, 1, 256, 256) radiograph -> (1, channels, 256 / 2^levels, ...) feature maps."""

    def __init__(self, channels: int, levels: int = 2) -> None:
        super().__init__()
        widths = [channels // 2 ** (levels - 1 - i) for i in range(levels)]
        self.blocks = nn.Sequential(
            *[conv2d_block(c_in, c_out, 2) for c_in, c_out in zip([1, *widths], widths, strict=False)]
        )
        self.stride = 2**levels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.blocks(image)


class AttentionGate(nn.Module):
    """Additive attention on a skip connection: the coarser decoder state says where to look."""

    def __init__(self, skip_channels: int, gate_channels: int) -> None:
        super().__init__()
        inner = max(skip_channels // 2, 4)
        self.skip = nn.Conv3d(skip_channels, inner, 1)
        self.gate = nn.Conv3d(gate_channels, inner, 1)
        self.score = nn.Conv3d(inner, 1, 1)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        attention = torch.sigmoid(self.score(F.leaky_relu(self.skip(skip) + self.gate(gate), 0.1)))
        return skip * attention


class Refiner3d(nn.Module):
    """3D U-Net; with `attention`, gated skip connections."""

    def __init__(self, c_in: int, widths: tuple[int, ...], attention: bool) -> None:
        super().__init__()
        self.down = nn.ModuleList([conv3d_block(a, b) for a, b in zip((c_in, *widths), widths, strict=False)])
        ups = widths[:0:-1]  # from the bottom up: 128, 64, 32 for (16, 32, 64, 128)
        self.up = nn.ModuleList([nn.ConvTranspose3d(c, c // 2, 2, stride=2) for c in ups])
        self.gates = nn.ModuleList([AttentionGate(c // 2, c // 2) if attention else nn.Identity() for c in ups])
        self.merge = nn.ModuleList([conv3d_block(c, c // 2) for c in ups])
        self.head = nn.Conv3d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoded(x))

    def decoded(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder features (widths[0] channels), which the 1x1 head turns into HU."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        for up, gate, merge, skip in zip(self.up, self.gates, self.merge, skips[-2::-1], strict=True):
            x = up(x)
            skip = gate(skip, x) if isinstance(gate, AttentionGate) else skip
            x = merge(torch.cat([x, skip], dim=1))
        return x


def scale_matrix(matrix: torch.Tensor, factor: float) -> torch.Tensor:
    """The matrix of an image resampled by `factor` (pixel edges aligned, as preprocess.rescale_projection)."""
    scale = torch.tensor(
        [[factor, 0.0, 0.5 * factor - 0.5], [0.0, factor, 0.5 * factor - 0.5], [0.0, 0.0, 1.0]], dtype=matrix.dtype
    )
    return scale @ matrix


class DenseLifting(nn.Module):
    """Geometry-free lifting, X2CT-style: each feature channel's pooled map is mapped to a small
    volume by one learned dense layer (shared across channels), then upsampled. No matrices."""

    def __init__(self, pooled_px: int = 12, seed_voxels: int = 10) -> None:
        super().__init__()
        self.pooled_px, self.seed_voxels = pooled_px, seed_voxels
        self.dense = nn.Linear(pooled_px * pooled_px, seed_voxels**3)

    def forward(self, features: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        n, c = features.shape[:2]
        pooled = F.adaptive_avg_pool2d(features, self.pooled_px).reshape(n, c, -1)
        seed = self.dense(pooled).reshape(n, c, *(self.seed_voxels,) * 3)
        return F.interpolate(seed, size=shape, mode="trilinear", align_corners=False)


class PSCTNet(nn.Module):
    """Inputs and output as the physics baseline: (pa, lateral, pa_matrix, lateral_matrix) -> HU."""

    name = "psct-net"

    def __init__(
        self,
        coarse_shape: tuple[int, int, int] = (80, 80, 80),
        coarse_voxel_mm: float = 3.0,
        output_shape: tuple[int, int, int] = (160, 160, 160),
        features: int = 16,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        attention: bool = True,
        lifting: str = "geometry",
    ) -> None:
        """`lifting`: "geometry" (back-projection with the study's matrices: PSCT-Net) or "dense"
        (learned, geometry-free: the X2CT-style baseline; the matrices are then ignored)."""
        super().__init__()
        d, h, w = coarse_shape
        self.register_buffer("x_mm", torch.tensor(axis_mm(w, coarse_voxel_mm), dtype=torch.float32))
        self.register_buffer("y_mm", torch.tensor(axis_mm(h, coarse_voxel_mm), dtype=torch.float32))
        self.register_buffer("z_mm", torch.tensor(axis_mm(d, coarse_voxel_mm), dtype=torch.float32))
        self.output_shape = output_shape
        self.encoders = nn.ModuleList([ViewEncoder(features), ViewEncoder(features)])  # PA, lateral
        # Each view's features, their product (where both views agree) and coverage masks.
        if lifting not in ("geometry", "dense"):
            raise ValueError(f"lifting must be 'geometry' or 'dense', got {lifting!r}")
        self.dense = nn.ModuleList([DenseLifting(), DenseLifting()]) if lifting == "dense" else None
        self.coarse_shape = coarse_shape
        self.refiner = Refiner3d(3 * features + 2, widths, attention)
        self.config = {"coarse_shape": list(coarse_shape), "coarse_voxel_mm": coarse_voxel_mm,
                       "output_shape": list(output_shape), "features": features, "widths": list(widths),
                       "attention": attention, "lifting": lifting}  # fmt: skip

    def _lift(self, view: int, image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        features = self.encoders[view](image)
        # Lifting stays float32 when training autocasts the convolutions to bfloat16: with 8
        # significant bits the sampling positions would round by up to 1/512 of the detector
        # (0.125 px of the 64 px feature maps) and the lifted features by up to 0.4 %.
        with torch.autocast(image.device.type, enabled=False):
            features = features.float()
            features = torch.cat([features, torch.ones_like(features[:, :1])], 1)  # + coverage
            if self.dense is not None:
                return self.dense[view](features, self.coarse_shape)
            matrix = scale_matrix(matrix.float(), features.shape[-1] / INPUT_SHAPE_PX[1])[None]
            return back_project(features, matrix, self.x_mm, self.y_mm, self.z_mm)

    def coarse(
        self, pa: torch.Tensor, lateral: torch.Tensor, pa_matrix: torch.Tensor, lateral_matrix: torch.Tensor
    ) -> torch.Tensor:
        """HU / HU_SCALE on the coarse grid (what training compares with pooled truth)."""
        return self.refiner(self._fused(pa, lateral, pa_matrix, lateral_matrix))

    def coarse_features(
        self, pa: torch.Tensor, lateral: torch.Tensor, pa_matrix: torch.Tensor, lateral_matrix: torch.Tensor
    ) -> torch.Tensor:
        """The refiner's last features on the coarse grid, before its 1x1 HU head (stage 2 may read them)."""
        return self.refiner.decoded(self._fused(pa, lateral, pa_matrix, lateral_matrix))

    def _fused(
        self, pa: torch.Tensor, lateral: torch.Tensor, pa_matrix: torch.Tensor, lateral_matrix: torch.Tensor
    ) -> torch.Tensor:
        lifted_pa = self._lift(0, pa, pa_matrix)
        lifted_lat = self._lift(1, lateral, lateral_matrix)
        f_pa, seen_pa = lifted_pa[:, :-1], lifted_pa[:, -1:]
        f_lat, seen_lat = lifted_lat[:, :-1], lifted_lat[:, -1:]
        return torch.cat([f_pa, f_lat, f_pa * f_lat, seen_pa, seen_lat], dim=1)

    def forward(
        self, pa: torch.Tensor, lateral: torch.Tensor, pa_matrix: torch.Tensor, lateral_matrix: torch.Tensor
    ) -> torch.Tensor:
        coarse = self.coarse(pa, lateral, pa_matrix, lateral_matrix)
        fine = F.interpolate(coarse, size=self.output_shape, mode="trilinear", align_corners=False)
        return fine * HU_SCALE
