"""The shipped models: the served PSCT-Net stage 1, described by its sidecar, better than the baseline;
and the default, stage 2 on top of that very stage 1, better than stage 1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from model import metrics
from model.simulator import simulate_head
from model.train import TrainConfig
from model.train_refine import RefineConfig
from service.settings import DEFAULT_MODEL, PHYSICS_BASELINE
from worker.pipeline import reconstruct
from worker.runtime import cached

CONFIGS = Path(__file__).resolve().parents[2] / "model" / "configs"
# reference.json and refine.json, without the soft-Dice term, stay the baselines the experiments of
# each stage change one field of; the served stages are those with the term.
SERVED_STAGE1, SERVED_REFINE = CONFIGS / "dice-1-3000-steps.json", CONFIGS / "refine-dice-1.json"
STAGE1 = DEFAULT_MODEL.with_name("psct-net.onnx")  # the base inside the default; PSCT_MODEL_PATH serves it
# Issue 5's field and voxel bounds; its ONNX-vs-PyTorch tolerance.
MIN_FIELD_MM, MAX_VOXEL_MM, MAX_EXPORT_DIFF_HU = 220.0, 1.75, 1.0
# The held-out evaluation (docs/results.md) measured PSCT-Net several dB above the baseline; 3 dB on
# three heads leaves room for one hard head while still failing a model that learned nothing.
MIN_PSNR_GAIN_DB = 3.0


def test_stage1_is_the_served_psct_net_its_sidecar_describes() -> None:
    sidecar = json.loads(STAGE1.with_suffix(".json").read_text())
    assert hashlib.sha256(STAGE1.read_bytes()).hexdigest() == sidecar["sha256"]
    assert sidecar["kind"] == "psct-net" and "not for diagnostic use" in sidecar["label"]
    grid = sidecar["output_grid"]
    assert min(grid["shape_zyx"]) * grid["voxel_mm"] >= MIN_FIELD_MM and grid["voxel_mm"] <= MAX_VOXEL_MM
    assert sidecar["export_check"]["max_abs_diff_hu"] <= MAX_EXPORT_DIFF_HU
    served = TrainConfig.from_json(SERVED_STAGE1)
    # `psct train --config model/configs/dice-1-3000-steps.json` makes these weights (README: ~1 h here).
    assert sidecar["training"]["config_digest"] == served.digest()
    assert sidecar["training"]["steps"] == served.steps
    assert json.loads(PHYSICS_BASELINE.with_suffix(".json").read_text())["kind"] == "physics-baseline"


@pytest.fixture(scope="module")
def unseen_scores() -> list[dict[str, tuple[float, float]]]:
    """(PSNR dB, bone Dice) of each shipped model on three unseen heads: full-resolution radiographs (as
    `psct simulate` writes them) through the service's own path."""
    rows = []
    for age_y, condition, seed in ((0.7, "sagittal", 31), (5.0, "normal", 32), (15.0, "metopic", 33)):
        pair = simulate_head(age_y, condition, seed)
        truth = pair.head.hu
        scores = {}
        for model in (STAGE1, PHYSICS_BASELINE, DEFAULT_MODEL):
            volume, _ = reconstruct(pair.pa.dataset, pair.lateral.dataset, cached(model))
            scores[model.name] = (metrics.psnr_db(volume, truth), metrics.dice(volume > 300, truth > 300))
        rows.append(scores)
    return rows


def test_stage1_beats_the_physics_baseline_on_unseen_heads(unseen_scores: list[dict]) -> None:
    gains = []
    for scores in unseen_scores:
        learned, baseline = scores[STAGE1.name], scores[PHYSICS_BASELINE.name]
        assert learned[1] > baseline[1], scores
        gains.append(learned[0] - baseline[0])
    assert np.mean(gains) >= MIN_PSNR_GAIN_DB, gains


def test_the_default_is_the_served_refine_config_on_the_shipped_stage1() -> None:
    assert DEFAULT_MODEL.name == "psct-net-stage2.onnx"
    sidecar = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest() == sidecar["sha256"]
    assert "not for diagnostic use" in sidecar["label"] and "fine_head" in sidecar["architecture"]
    assert sidecar["export_check"]["max_abs_diff_hu"] <= MAX_EXPORT_DIFF_HU
    stage2, refine = sidecar["training"]["stage2"], RefineConfig.from_json(SERVED_REFINE)
    assert stage2["stage1_sha256"] == hashlib.sha256(STAGE1.read_bytes()).hexdigest()
    assert stage2["config_digest"] == refine.digest() and stage2["steps"] == refine.steps


def test_the_default_stage2_improves_on_stage1_on_unseen_heads(unseen_scores: list[dict]) -> None:
    """On means over the three heads (held-out: see docs/results.md); one head may differ."""
    stage1 = np.mean([s[STAGE1.name] for s in unseen_scores], axis=0)
    stage2 = np.mean([s[DEFAULT_MODEL.name] for s in unseen_scores], axis=0)
    assert stage2[0] > stage1[0] and stage2[1] > stage1[1], (stage1, stage2)


@pytest.mark.parametrize(("path", "name"), [(DEFAULT_MODEL, "psct-net"), (STAGE1, "psct-net"),
                                            (PHYSICS_BASELINE, "psct-physics-baseline")])  # fmt: skip
def test_every_shipped_model_loads_in_the_worker_runtime(path: Path, name: str) -> None:
    runtime = cached(path)
    assert runtime.sidecar["name"] == name and runtime.voxel_mm <= MAX_VOXEL_MM
