"""Benchmark of the data engine: prints how fast heads and radiograph pairs are made. Asserts nothing.

Three rates: a full `psct simulate` pair (panel-resolution DICOM, vendor processing), a training
pair (model/dataset.py: the same physics on ~1 mm binned pixels with RTK's projector, read back
through the service's input path) and, for the ratio, one training step of a 3D U-Net of the size
issue #5 plans (16-32-64-128 channels, ~1.4 M parameters, batch 1, Adam) at the 80^3 truth grid.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.dataset import make_pair, pair_spec  # noqa: E402
from model.dx_writer import study_for_seed  # noqa: E402
from model.grid import OUTPUT_SHAPE, VOXEL_MM  # noqa: E402
from model.simulator import simulate_radiographs  # noqa: E402
from model.skull import parameters, phantom  # noqa: E402

HEADS = 4
TRAINING_PAIRS = 12
STEPS = 6
TRUTH_POOL = 2  # the 80^3 grid at 3 mm


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(c_in, c_out, 3, padding=1), nn.InstanceNorm3d(c_out), nn.LeakyReLU(),
                         nn.Conv3d(c_out, c_out, 3, padding=1), nn.InstanceNorm3d(c_out), nn.LeakyReLU())  # fmt: skip


class _UNet3d(nn.Module):
    """A stand-in with the planned 3D network's size, only to time a training step."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.down = nn.ModuleList([_block(c_in, c_out) for c_in, c_out in zip((2, *widths), widths, strict=False)])
        self.up = nn.ModuleList([nn.ConvTranspose3d(c, c // 2, 2, stride=2) for c in widths[:0:-1]])
        self.merge = nn.ModuleList([_block(c, c // 2) for c in widths[:0:-1]])
        self.head = nn.Conv3d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool3d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1], strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def training_step_s(size: int) -> tuple[float, int]:
    torch.manual_seed(0)
    net = _UNet3d()
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    x, target = torch.randn(1, 2, size, size, size), torch.randn(1, 1, size, size, size)
    times = []
    for _ in range(STEPS):
        start = time.perf_counter()
        optimiser.zero_grad()
        nn.functional.l1_loss(net(x), target).backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:])), sum(p.numel() for p in net.parameters())


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} (threads "
          f"{torch.get_num_threads()})")  # fmt: skip
    phantom_s, full_s = [], []
    for seed in range(HEADS):
        start = time.perf_counter()
        head = phantom(parameters(2.0 + 4 * seed, "normal", seed), OUTPUT_SHAPE, VOXEL_MM)
        phantom_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        simulate_radiographs(head.hu, VOXEL_MM, study_for_seed(seed), seed)
        full_s.append(time.perf_counter() - start)
    make_pair(pair_spec(0, 99), TRUTH_POOL)  # loads ITK's RTK module (~10 s, once per process)
    pair_s = []
    for index in range(TRAINING_PAIRS):
        start = time.perf_counter()
        make_pair(pair_spec(index), TRUTH_POOL)
        pair_s.append(time.perf_counter() - start)
    phantom_t, full_t, pair_t = (float(np.median(v)) for v in (phantom_s, full_s, pair_s))
    size = OUTPUT_SHAPE[0] // TRUTH_POOL
    step_t, params = training_step_s(size)
    print(f"phantom on the serving grid {OUTPUT_SHAPE} at {VOXEL_MM} mm: {phantom_t:.2f} s (median of {HEADS})")
    print(f"full psct-simulate pair (panel resolution, physics, vendor look): {phantom_t + full_t:.2f} s with "
          f"its phantom -> {60 / (phantom_t + full_t):.1f} per minute")  # fmt: skip
    print(f"training pair (phantom, physics on ~1 mm bins, RTK, network inputs, {size}^3 truth): "
          f"{pair_t:.2f} s median of {TRAINING_PAIRS} (mean {np.mean(pair_s):.2f})"
          f" -> {60 / pair_t:.1f} per minute")  # fmt: skip
    print(f"3D U-Net stand-in ({params / 1e6:.2f} M parameters) training step at {size}^3: {step_t:.2f} s")
    print(f"generation / training step: {pair_t / step_t:.1f} (each cached pair serves many steps: "
          f"`psct dataset` writes them once, PairStream reads them back)")  # fmt: skip


if __name__ == "__main__":
    main()
