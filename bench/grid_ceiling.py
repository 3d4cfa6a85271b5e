"""What a coarse internal grid costs at best: the truth pooled to it and upsampled back. Asserts nothing.

PSCT-Net's stage 1 predicts HU on a grid `pool` times coarser than the 1.5 mm serving grid and
upsamples trilinearly. Its best possible output is the truth average-pooled to that grid and
upsampled the same way; this prints how that scores on held-out heads with psct evaluate's
metrics, next to the shipped model's scores on the same heads: the share of the gap the grid
explains and the share left to learning.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.settings import DEFAULT_MODEL  # noqa: E402

COLUMNS = ("psnr_db", "bone_dice", "assd_mm", "icv_error_pct", "ci_error_points")


def pooled_and_upsampled(hu: np.ndarray, pool: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    volume = torch.from_numpy(hu.astype(np.float32))[None, None]
    coarse = F.avg_pool3d(volume, pool)
    return F.interpolate(coarse, size=hu.shape, mode="trilinear", align_corners=False)[0, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=5, help="score every Nth held-out head (default 5: 7 heads)")
    parser.add_argument("--pool", type=int, nargs="+", default=[2], help="coarse grid factors (2: 3 mm)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="an exported model scored beside them")
    args = parser.parse_args()

    import onnxruntime as ort

    from model.evaluate import held_out_specs, make_case, score

    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    specs = held_out_specs()[:: args.every]
    rows: dict[str, list[dict[str, float]]] = {f"truth on the {1.5 * p:g} mm grid": [] for p in args.pool}
    rows[args.model.name] = []
    start = time.perf_counter()
    for spec in specs:
        case = make_case(spec, "standard")
        for pool in args.pool:
            rows[f"truth on the {1.5 * pool:g} mm grid"].append(score(pooled_and_upsampled(case.truth_hu, pool), case))
        rows[args.model.name].append(score(session.run(None, case.inputs)[0][0, 0], case))
        print(f"{spec.condition} {spec.age_y:g} y", flush=True)
    print(f"\n{len(specs)} held-out heads (every {args.every}th), {platform.machine()} with {os.cpu_count()} CPUs, "
          f"{(time.perf_counter() - start) / 60:.1f} min")  # fmt: skip
    print("| row | " + " | ".join(COLUMNS) + " |")
    print("| --- |" + " --- |" * len(COLUMNS))
    for name, scores in rows.items():
        print(f"| {name} | " + " | ".join(f"{np.nanmean([s[c] for s in scores]):.3g}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
