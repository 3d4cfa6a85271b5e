"""PSCT-Net's second stage: a light full-resolution head on top of the coarse (3 mm) network.

The coarse network works on an 80^3 grid of 3 mm voxels; even its best possible output, the truth
pooled to that grid and upsampled, keeps only ~0.76 bone Dice on the 1.5 mm serving grid
(bench/grid_ceiling.py): thin bone and sutures are below its resolution. The fine head sees the
upsampled coarse HU and each view's full-resolution detail, back-projected with the same matrices
onto the 1.5 mm grid, and adds a correction. It has no normalisation layers and a small receptive
field, so it trains on patches and runs unchanged on the whole volume.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.grid import OUTPUT_SHAPE, VOXEL_MM, axis_mm
from model.network import HU_SCALE, PSCTNet
from model.projector import back_project

FINE_LAYERS = 4  # 3x3x3 convolutions by default: the head's receptive radius in voxels, the patch margin
UNET_MARGIN = 9  # PatchUNet's receptive radius in voxels: 8 or 9 by the voxel's parity (measured by gradients)


class PatchUNet(nn.Module):
    """A two-level U-Net for the fine head: two 3x3x3 convolutions at full resolution, a 2x2x2 stride-2
    convolution, two at half resolution, a 2x2x2 transposed convolution added to the skip, and two more.
    No normalisation, so a patch interior equals the whole volume's output there, as long as the patch
    starts on an even voxel (the stride-2 blocks then align with the whole volume's)."""

    stride = 2
    margin = UNET_MARGIN

    def __init__(self, c_in: int, channels: int) -> None:
        super().__init__()
        wide = 2 * channels

        def conv(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv3d(a, b, 3, padding=1), nn.LeakyReLU(0.1)]

        self.encode = nn.Sequential(*conv(c_in, channels), *conv(channels, channels))
        self.down = nn.Sequential(nn.Conv3d(channels, wide, 2, stride=2), nn.LeakyReLU(0.1), *conv(wide, wide),
                                  *conv(wide, wide))  # fmt: skip
        self.up = nn.ConvTranspose3d(wide, channels, 2, stride=2)
        self.decode = nn.Sequential(*conv(channels, channels), nn.Conv3d(channels, 1, 3, padding=1))
        nn.init.zeros_(self.decode[-1].weight)  # starts as the identity on stage 1's HU: no early damage
        nn.init.zeros_(self.decode[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.encode(x)
        return self.decode(skip + self.up(self.down(skip)))


class FineHead(nn.Module):
    """(coarse HU / HU_SCALE on a grid, views, matrices, that grid's axes) -> corrected HU / HU_SCALE."""

    def __init__(self, channels: int = 8, view_channels: int = 4, layers: int = FINE_LAYERS, coarse_features: int = 0,
                 stage1_channels: int = 16, body: str = "plain") -> None:  # fmt: skip
        """`coarse_features` > 0: the head also reads stage 1's last features (`stage1_channels` of
        them), mixed down to that many channels by a 1x1 convolution on the coarse grid, where it is cheap.
        `body`: "plain", `layers` 3x3x3 convolutions of `channels`; or "unet", a PatchUNet of `channels`
        at full resolution (`layers` is then unused)."""
        super().__init__()
        if layers < 2:
            raise ValueError(f"the fine head needs at least 2 layers, got {layers}")
        if body not in ("plain", "unet"):
            raise ValueError(f"unknown fine-head body {body!r}: plain or unet")
        self.views = nn.ModuleList([
            nn.Sequential(nn.Conv2d(1, view_channels, 3, padding=1), nn.LeakyReLU(0.1),
                          nn.Conv2d(view_channels, view_channels, 3, padding=1))
            for _ in range(2)
        ])  # fmt: skip
        self.reduce = nn.Conv3d(stage1_channels, coarse_features, 1) if coarse_features else None
        c_in = 1 + 3 * view_channels + coarse_features
        self.body: nn.Module
        if body == "unet":
            self.body = PatchUNet(c_in, channels)
            self.margin, self.stride = PatchUNet.margin, PatchUNet.stride
        else:
            widths = [c_in] + [channels] * (layers - 1)
            convs: list[nn.Module] = []
            for a, b in zip(widths, widths[1:], strict=False):
                convs += [nn.Conv3d(a, b, 3, padding=1), nn.LeakyReLU(0.1)]
            self.body = nn.Sequential(*convs, nn.Conv3d(channels, 1, 3, padding=1))
            self.margin, self.stride = layers, 1  # the receptive radius in voxels: patch training's margin
        self.config = {"channels": channels, "view_channels": view_channels, "layers": layers}
        if coarse_features:  # only then: earlier heads' sidecars stay as they were
            self.config.update(coarse_features=coarse_features, stage1_channels=stage1_channels)
        if body != "plain":
            self.config["body"] = body

    def view_features(self, pa: torch.Tensor, lateral: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.views[0](pa), self.views[1](lateral)

    def head_inputs(self, coarse: torch.Tensor, features: tuple[torch.Tensor, torch.Tensor], pa_matrix: torch.Tensor,
                lateral_matrix: torch.Tensor, x_mm: torch.Tensor, y_mm: torch.Tensor,
                z_mm: torch.Tensor, stage1: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The body's input on one grid: coarse HU, both views back-projected and, with `reduce`, stage 1's
        mixed features upsampled to that grid (the body runs on a batch)."""
        pa, lateral = (
            back_project(f, m[None], x_mm, y_mm, z_mm)
            for f, m in zip(features, (pa_matrix, lateral_matrix), strict=True)
        )
        return torch.cat([coarse, pa, lateral, pa * lateral, *([] if stage1 is None else [stage1])], dim=1)

    def forward(self, coarse: torch.Tensor, pa: torch.Tensor, lateral: torch.Tensor, pa_matrix: torch.Tensor,
                lateral_matrix: torch.Tensor, x_mm: torch.Tensor, y_mm: torch.Tensor, z_mm: torch.Tensor,
                stage1_features: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """`stage1_features`: stage 1's last features on its coarse grid (needed with `reduce`)."""
        stage1 = None
        if self.reduce is not None:
            if stage1_features is None:
                raise ValueError("this fine head reads stage 1's features: pass stage1_features")
            stage1 = F.interpolate(self.reduce(stage1_features), size=coarse.shape[-3:], mode="trilinear",
                                   align_corners=False)  # fmt: skip
        features = self.view_features(pa, lateral)
        stacked = self.head_inputs(coarse, features, pa_matrix, lateral_matrix, x_mm, y_mm, z_mm, stage1)
        return coarse + self.body(stacked)


class RefinedNet(nn.Module):
    """The served PSCT-Net: coarse network, trilinear upsampling, fine head; the baseline's interface."""

    name = "psct-net"

    def __init__(self, coarse: PSCTNet, head: FineHead) -> None:
        super().__init__()
        self.coarse, self.head = coarse, head
        self.output_shape = coarse.output_shape
        d, h, w = self.output_shape
        self.register_buffer("x_mm", torch.tensor(axis_mm(w, VOXEL_MM), dtype=torch.float32))
        self.register_buffer("y_mm", torch.tensor(axis_mm(h, VOXEL_MM), dtype=torch.float32))
        self.register_buffer("z_mm", torch.tensor(axis_mm(d, VOXEL_MM), dtype=torch.float32))
        self.config = {**coarse.config, "fine_head": head.config}

    def forward(self, pa: torch.Tensor, lateral: torch.Tensor, pa_matrix: torch.Tensor,
                lateral_matrix: torch.Tensor) -> torch.Tensor:  # fmt: skip
        axes = (self.x_mm, self.y_mm, self.z_mm)
        if self.head.reduce is None:  # the graph of the heads that read only stage 1's HU, unchanged
            upsampled = upsampled_coarse(self.coarse, pa, lateral, pa_matrix, lateral_matrix)
            return self.head(upsampled, pa, lateral, pa_matrix, lateral_matrix, *axes) * HU_SCALE
        upsampled, features = upsampled_with_features(self.coarse, pa, lateral, pa_matrix, lateral_matrix)
        return self.head(upsampled, pa, lateral, pa_matrix, lateral_matrix, *axes, features) * HU_SCALE


def upsampled_coarse(coarse: PSCTNet, pa: torch.Tensor, lateral: torch.Tensor, pa_matrix: torch.Tensor,
                     lateral_matrix: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The coarse network's HU / HU_SCALE on the serving grid, as its own forward upsamples it."""
    low = coarse.coarse(pa, lateral, pa_matrix, lateral_matrix)
    return F.interpolate(low, size=coarse.output_shape, mode="trilinear", align_corners=False)


def upsampled_with_features(coarse: PSCTNet, pa: torch.Tensor, lateral: torch.Tensor, pa_matrix: torch.Tensor,
                            lateral_matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """As upsampled_coarse, and stage 1's last features on its own grid (for a head that reads them)."""
    features = coarse.coarse_features(pa, lateral, pa_matrix, lateral_matrix)
    upsampled = F.interpolate(coarse.refiner.head(features), size=coarse.output_shape, mode="trilinear",
                              align_corners=False)  # fmt: skip
    return upsampled, features


def upsampled_patch(coarse: torch.Tensor, z: slice, y: slice, x: slice,
                    fine_shape: tuple[int, ...] = OUTPUT_SHAPE) -> torch.Tensor:  # fmt: skip
    """One patch of F.interpolate(coarse, fine_shape, trilinear, align_corners=False), computed only
    there: grid_sample at the patch's voxel centres (border clamping is interpolate's at the edges)."""
    axes = [
        (torch.arange(s.start, s.stop, dtype=coarse.dtype) + 0.5) / n * 2 - 1
        for s, n in zip((z, y, x), fine_shape, strict=True)
    ]
    gz, gy, gx = torch.meshgrid(*axes, indexing="ij")
    grid = torch.stack([gx, gy, gz], dim=-1)[None].expand(coarse.shape[0], -1, -1, -1, -1)
    return F.grid_sample(coarse, grid, mode="bilinear", padding_mode="border", align_corners=False)


def coarse_from_onnx(onnx_path: Path, atol_hu: float = 1.0) -> PSCTNet:
    """A coarse PSCT-Net rebuilt from an exported ONNX file (its sidecar's config, its initialisers),
    checked against that file on the export's inputs: stage 2 can start from the shipped stage 1."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from model.export import INPUT_NAMES, example_inputs
    from model.train import TrainConfig, build

    sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    training = sidecar.get("training") or {}
    if "fine_head" in sidecar.get("architecture", {}) or "config" not in training:
        raise ValueError(f"{onnx_path} is not a coarse PSCT-Net export (no stage-1 training config in its sidecar)")
    net = build(TrainConfig.from_dict(training["config"]))
    graph = onnx.load(str(onnx_path)).graph
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    missing = set(net.state_dict()) - set(weights) - {"x_mm", "y_mm", "z_mm"}  # the axes are rebuilt
    if missing:
        raise ValueError(f"{onnx_path} lacks weights {sorted(missing)[:5]}")
    net.load_state_dict({k: v for k, v in weights.items() if k in net.state_dict()}, strict=False)
    net.eval()
    inputs = example_inputs()
    with torch.no_grad():
        ours = net(*inputs).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)})[0]
    difference = float(np.max(np.abs(ours - theirs)))
    if difference > atol_hu:
        raise ValueError(f"{onnx_path}: rebuilt network differs by {difference:.3g} HU (> {atol_hu} HU)")
    return net


def output_axes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d, h, w = OUTPUT_SHAPE
    return tuple(torch.tensor(axis_mm(n, VOXEL_MM), dtype=torch.float32) for n in (w, h, d))  # type: ignore[return-value]
