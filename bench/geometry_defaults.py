"""What missing geometry tags cost, head by head: the defaults' magnification error beside the drop. Asserts nothing.

With DistanceSourceToDetector, DistanceSourceToPatient and EstimatedRadiographicMagnificationFactor
absent, the projection matrices assume the documented defaults (1000 mm SID, isocentre 140 mm in
front of the detector), so each view is lifted at the wrong magnification. This reads the per-head
scores `psct evaluate --robust` wrote (standard and no-geometry cases of one model), recomputes
each held-out head's true magnification from its seed, and prints the relative magnification error
of the defaults for both views beside the PSNR and bone-Dice drop, with their correlation: how much
of the no-geometry column the geometry itself explains. Needs no model run (a few seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.acquisition import random_pair  # noqa: E402
from model.evaluate import held_out_specs  # noqa: E402
from model.geometry import DEFAULT_ISOCENTRE_TO_DETECTOR_MM, DEFAULT_SID_MM  # noqa: E402

DEFAULT_MAGNIFICATION = DEFAULT_SID_MM / (DEFAULT_SID_MM - DEFAULT_ISOCENTRE_TO_DETECTOR_MM)


def magnification_errors(seed: int) -> tuple[float, float]:
    """(PA, lateral) default magnification / true magnification - 1 for the head drawn from `seed`."""
    pa, lateral = random_pair(np.random.default_rng(seed))  # the setups psct evaluate draws (make_case)
    return tuple(DEFAULT_MAGNIFICATION / (s.sid_mm / s.sod_mm) - 1.0 for s in (pa, lateral))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("docs/results.json"), help="psct evaluate's JSON")
    parser.add_argument("--model", default="psct-net", help="a model evaluated with --robust")
    args = parser.parse_args()
    scores = json.loads(args.results.read_text())[args.model]
    if "no-geometry" not in scores:
        sys.exit(f"{args.results}: {args.model} has no no-geometry cases (evaluate it with --robust {args.model})")
    specs = held_out_specs()
    standard, missing = scores["standard"], scores["no-geometry"]
    if len(standard) != len(specs) or len(missing) != len(specs):
        sys.exit(f"{args.results}: {len(standard)} standard, {len(missing)} no-geometry cases for {len(specs)} heads")
    rows = []
    for spec, a, b in zip(specs, standard, missing, strict=True):
        if abs(a["age_y"] - spec.age_y) > 1e-6 or a["condition"] != spec.condition:
            sys.exit(f"{args.results}: case order differs from the held-out set at age {a['age_y']} {a['condition']}")
        pa_err, lat_err = magnification_errors(spec.seed)
        drops = a["psnr_db"] - b["psnr_db"], a["bone_dice"] - b["bone_dice"]
        rows.append((spec.age_y, spec.condition, pa_err, lat_err, *drops))
    rows.sort(key=lambda r: abs(r[2]) + abs(r[3]))
    print(f"{args.model} ({args.results}); default magnification {DEFAULT_MAGNIFICATION:.3f}")
    print("| age y | condition | PA mag error % | lateral mag error % | PSNR drop dB | Dice drop |")
    print("| --- | --- | --- | --- | --- | --- |")
    for age, condition, pa_err, lat_err, d_psnr, d_dice in rows:
        print(f"| {age:.2f} | {condition} | {100 * pa_err:+.1f} | {100 * lat_err:+.1f} | {d_psnr:.2f} | {d_dice:.3f} |")
    table = np.array([r[2:] for r in rows])
    size = np.abs(table[:, :2]).mean(axis=1)
    print(f"mean |magnification error| {100 * size.mean():.1f} % (max {100 * np.abs(table[:, :2]).max():.1f} %)")
    print(f"mean drop: PSNR {table[:, 2].mean():.2f} dB, Dice {table[:, 3].mean():.3f}")
    print(
        f"Pearson r with the mean |error| of the two views: PSNR drop {np.corrcoef(size, table[:, 2])[0, 1]:.2f}, "
        f"Dice drop {np.corrcoef(size, table[:, 3])[0, 1]:.2f}"
    )


if __name__ == "__main__":
    main()
