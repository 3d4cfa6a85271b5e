"""Benchmark of the data engine: prints how fast heads and radiograph pairs are made. Asserts nothing.

Three rates: a full `psct simulate` pair (panel-resolution DICOM, vendor processing), a training
pair (model/dataset.py: the same physics on ~1 mm binned pixels with RTK's projector, read back
through the service's input path) and, for the ratio, one training step of PSCT-Net in its
reference configuration (model/configs/reference.json: batch 1, Adam, 80^3) in float32 and with
bfloat16 convolutions (model/configs/bfloat16/reference.json), plus its inference.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.dataset import TrainingPair, make_pair, pair_spec  # noqa: E402
from model.dx_writer import study_for_seed  # noqa: E402
from model.grid import OUTPUT_SHAPE, VOXEL_MM  # noqa: E402
from model.simulator import simulate_radiographs  # noqa: E402
from model.skull import parameters, phantom  # noqa: E402
from model.train import TrainConfig, build, inputs_of, loss_terms  # noqa: E402

HEADS = 4
TRAINING_PAIRS = 12
STEPS = 6
TRUTH_POOL = 2  # the 80^3 grid at 3 mm, as the reference configuration
CONFIGS = Path(__file__).resolve().parent.parent / "model" / "configs"
REFERENCE = CONFIGS / "reference.json"
BFLOAT16 = CONFIGS / "bfloat16" / "reference.json"


def training_step_s(pair: TrainingPair, config_path: Path = REFERENCE) -> tuple[float, float, int]:
    """(median training step, inference, parameters) of PSCT-Net in a configuration."""
    config = TrainConfig.from_json(config_path)
    net = build(config)
    optimiser = torch.optim.Adam(net.parameters(), config.learning_rate)
    times = []
    for _ in range(STEPS):
        start = time.perf_counter()
        optimiser.zero_grad()
        loss_terms(net, pair, config.losses, config.precision)["total"].backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        start = time.perf_counter()
        net.eval()(*inputs_of(pair))
        inference = time.perf_counter() - start
    return float(np.median(times[1:])), inference, sum(p.numel() for p in net.parameters())


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
        pair = make_pair(pair_spec(index), TRUTH_POOL)
        pair_s.append(time.perf_counter() - start)
    phantom_t, full_t, pair_t = (float(np.median(v)) for v in (phantom_s, full_s, pair_s))
    size = OUTPUT_SHAPE[0] // TRUTH_POOL
    step_t, inference_t, params = training_step_s(pair)
    bf16_step_t = training_step_s(pair, BFLOAT16)[0]
    print(f"phantom on the serving grid {OUTPUT_SHAPE} at {VOXEL_MM} mm: {phantom_t:.2f} s (median of {HEADS})")
    print(f"full psct-simulate pair (panel resolution, physics, vendor look): {phantom_t + full_t:.2f} s with "
          f"its phantom -> {60 / (phantom_t + full_t):.1f} per minute")  # fmt: skip
    print(f"training pair (phantom, physics on ~1 mm bins, RTK, network inputs, {size}^3 truth): "
          f"{pair_t:.2f} s median of {TRAINING_PAIRS} (mean {np.mean(pair_s):.2f})"
          f" -> {60 / pair_t:.1f} per minute")  # fmt: skip
    print(f"PSCT-Net ({params / 1e6:.2f} M parameters) training step at {size}^3: {step_t:.2f} s; "
          f"inference (PyTorch, to 160^3): {inference_t:.2f} s")  # fmt: skip
    print(f"the same step with bfloat16 convolutions: {bf16_step_t:.2f} s ({step_t / bf16_step_t:.2f}x)")
    print(f"generation / training step: {pair_t / step_t:.1f} (each cached pair serves many steps: "
          f"`psct dataset` writes them once, PairStream reads them back)")  # fmt: skip


if __name__ == "__main__":
    main()
