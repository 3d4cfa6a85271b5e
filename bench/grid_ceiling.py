"""What a coarse internal grid costs at best: the truth pooled to it and upsampled back. Asserts nothing.

PSCT-Net's stage 1 predicts HU on a grid `pool` times coarser than the 1.5 mm serving grid and
upsamples trilinearly. Its best possible output is the truth average-pooled to that grid and
upsampled the same way; this prints how that scores on held-out heads with psct evaluate's
metrics, next to exported models' scores on the same heads: the share of the gap the grid
explains and the share left to learning. `--validation` scores heads of another stream instead:
compare experiments there, so the held-out set stays a test. `--training N` scores the first N
heads of the training stream (seed 0, geometry tags present): a model that scores them no better
than validation heads is under-fitted, not short of data.
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


def down_and_up(hu: np.ndarray, coarse_shape: list[int]) -> np.ndarray:
    """The truth averaged onto a coarser grid (any factor: adaptive pooling) and upsampled back."""
    import torch
    import torch.nn.functional as F

    volume = torch.from_numpy(hu.astype(np.float32))[None, None]
    coarse = F.adaptive_avg_pool3d(volume, coarse_shape)
    return F.interpolate(coarse, size=hu.shape, mode="trilinear", align_corners=False)[0, 0].numpy()


def pooled_and_upsampled(hu: np.ndarray, pool: float) -> np.ndarray:
    return down_and_up(hu, [round(n / pool) for n in hu.shape])


def fitted_and_upsampled(hu: np.ndarray, voxels: int, margin_px: int = 3) -> np.ndarray:
    """The same with `voxels` per axis spread over the head's own box (tissue above -500 HU, plus a
    margin) instead of the whole field: what a field fitted to each head could reach at most, since
    the box comes from the truth here and would have to be estimated from the views."""
    head = hu > -500
    box = []
    for axis in range(3):
        filled = np.flatnonzero(head.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(filled[0] - margin_px, 0), min(filled[-1] + 1 + margin_px, hu.shape[axis])))
    out = np.full_like(hu, hu.min())
    out[tuple(box)] = down_and_up(hu[tuple(box)], [voxels] * 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=5, help="score every Nth held-out head (default 5: 7 heads)")
    parser.add_argument("--pool", type=float, nargs="+", default=[2], help="coarse grid factors (2: 3 mm)")
    parser.add_argument("--fitted", type=int, nargs="*", default=[], metavar="VOXELS", help="also the truth on a "
                        "grid of VOXELS per axis fitted to each head's box (80: stage 1's cost)")  # fmt: skip
    parser.add_argument("--model", type=Path, action="append", help="exported models scored beside them "
                        "(repeatable; default the service's)")  # fmt: skip
    parser.add_argument("--rest", action="store_true", help="score the heads --every leaves out instead")
    parser.add_argument("--validation", action="store_true", help="heads of the validation stream, not the held-out "
                        "set: the ones to compare experiments on")  # fmt: skip
    parser.add_argument("--training", type=int, metavar="N", help="the first N heads of the training stream "
                        "instead (seed 0): the fit, to set against the validation heads")  # fmt: skip
    args = parser.parse_args()
    models = args.model or [DEFAULT_MODEL]

    import onnxruntime as ort

    from model.dataset import pair_spec
    from model.evaluate import HELD_OUT_STREAM, VALIDATION_STREAM, held_out_specs, make_case, score

    sessions = {path.name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for path in models}
    heads = held_out_specs(stream=VALIDATION_STREAM if args.validation else HELD_OUT_STREAM)
    if args.training:
        heads = [pair_spec(i) for i in range(args.training)]  # make_case gives every head its tags
    every = heads[:: args.every]
    specs = [s for s in heads if s not in every] if args.rest else every
    rows: dict[str, list[dict[str, float]]] = {f"truth on the {1.5 * p:g} mm grid": [] for p in args.pool}
    rows.update({f"truth on {n} voxels per axis fitted to the head": [] for n in args.fitted})
    rows.update({name: [] for name in sessions})
    start = time.perf_counter()
    for spec in specs:
        case = make_case(spec, "standard")
        for pool in args.pool:
            rows[f"truth on the {1.5 * pool:g} mm grid"].append(score(pooled_and_upsampled(case.truth_hu, pool), case))
        for n in args.fitted:
            rows[f"truth on {n} voxels per axis fitted to the head"].append(
                score(fitted_and_upsampled(case.truth_hu, n), case)
            )
        for name, session in sessions.items():
            rows[name].append(score(session.run(None, case.inputs)[0][0, 0], case))
        print(f"{spec.condition} {spec.age_y:g} y", flush=True)
    which = f"all but every {args.every}th" if args.rest else "all" if args.every == 1 else f"every {args.every}th"
    stream = "training" if args.training else "validation" if args.validation else "held-out"
    which = f"{stream} heads ({which})"
    print(f"\n{len(specs)} {which}, {platform.machine()} with {os.cpu_count()} CPUs, "
          f"{(time.perf_counter() - start) / 60:.1f} min")  # fmt: skip
    print("| row | " + " | ".join(COLUMNS) + " |")
    print("| --- |" + " --- |" * len(COLUMNS))
    for name, scores in rows.items():
        print(f"| {name} | " + " | ".join(f"{np.nanmean([s[c] for s in scores]):.3g}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
