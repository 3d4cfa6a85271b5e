"""Benchmark of PSCT-Net inference on this CPU: ONNX Runtime vs PyTorch eager. Asserts nothing.

Prints, for one exported model (default: the service's), the median inference time of each runtime
and their ratio, each runtime's peak resident memory (measured in its own process, so one does not
hide the other), the parameter count and the FLOPs of one forward pass. PyTorch runs the same
architecture from the sidecar's training config with fresh weights: no op here depends on weight
values, so the time is the trained model's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.settings import DEFAULT_MODEL  # noqa: E402

REPEATS = 5


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # high-water mark of resident memory, kB
            return int(line.split()[1]) / 1024
    return float("nan")


def _torch_net(sidecar: dict):  # type: ignore[no-untyped-def]
    from model.train_refine import untrained_like

    return untrained_like(sidecar)


def child(runtime: str, onnx_path: Path) -> dict:
    """Median seconds of one inference (after a warm-up run) and the process's peak memory."""
    from model.export import INPUT_NAMES, example_inputs

    inputs = example_inputs()
    if runtime == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        feed = {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)}

        def infer() -> None:
            session.run(None, feed)
    else:
        import torch

        net = _torch_net(json.loads(onnx_path.with_suffix(".json").read_text()))

        def infer() -> None:
            with torch.no_grad():
                net(*inputs)

    infer()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        infer()
        times.append(time.perf_counter() - start)
    return {"median_s": float(np.median(times)), "peak_rss_mib": _peak_rss_mib()}


def flops_and_parameters(onnx_path: Path) -> tuple[float, int]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from model.export import example_inputs

    net = _torch_net(json.loads(onnx_path.with_suffix(".json").read_text()))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(*example_inputs())
    return float(counter.get_total_flops()), sum(p.numel() for p in net.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="exported .onnx (sidecar beside it)")
    parser.add_argument("--child", choices=("onnxruntime", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model)))
        return
    sidecar = json.loads(args.model.with_suffix(".json").read_text())
    if sidecar.get("kind") != "psct-net":
        sys.exit(f"{args.model} is a {sidecar.get('kind')!r} model; give a PSCT-Net export with --model")
    import onnxruntime
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; onnxruntime "
          f"{onnxruntime.__version__}, torch {torch.__version__} (threads {torch.get_num_threads()})")  # fmt: skip
    print(f"model: {args.model} ({sidecar['name']} {sidecar['version']}, output {sidecar['outputs'][0]['shape']})")
    figures = {}
    for runtime in ("onnxruntime", "torch"):
        out = subprocess.run([sys.executable, __file__, "--model", str(args.model), "--child", runtime],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        figures[runtime] = json.loads(out.strip().splitlines()[-1])
        print(f"{runtime:12s} inference {figures[runtime]['median_s']:.2f} s (median of {REPEATS}), "
              f"peak memory {figures[runtime]['peak_rss_mib']:.0f} MiB")  # fmt: skip
    ratio = figures["onnxruntime"]["median_s"] / figures["torch"]["median_s"]
    print(f"ratio onnxruntime / torch: {ratio:.2f}")
    flops, parameters = flops_and_parameters(args.model)
    print(f"parameters: {parameters:,}; forward FLOPs: {flops / 1e9:.1f} G (convolutions and matrix products, "
          "as torch.utils.flop_counter counts them; grid sampling and upsampling not included)")  # fmt: skip


if __name__ == "__main__":
    main()
