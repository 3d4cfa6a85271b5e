"""The held-out set and the evaluation table: fixed, disjoint from training, every band and condition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.evaluate import (
    AGE_BANDS_Y,
    VALIDATION_STREAM,
    check_disjoint,
    held_out_specs,
    make_case,
    record_metrics,
    run_evaluation,
)
from model.skull import CONDITIONS
from service.settings import PHYSICS_BASELINE


def test_the_held_out_set_spans_every_band_and_condition_and_never_changes() -> None:
    specs = held_out_specs()
    assert specs == held_out_specs()
    assert {s.condition for s in specs} == set(CONDITIONS) and len(specs) == len(AGE_BANDS_Y) * len(CONDITIONS)
    for low, high in AGE_BANDS_Y:
        assert sum(low <= s.age_y < high for s in specs) == len(CONDITIONS)
    check_disjoint(specs, training_pairs=2000, training_seed=0)


def test_the_validation_heads_are_neither_held_out_nor_training_heads() -> None:
    validation = held_out_specs(stream=VALIDATION_STREAM)
    assert {s.condition for s in validation} == set(CONDITIONS) and len(validation) == len(held_out_specs())
    assert not {s.seed for s in validation} & {s.seed for s in held_out_specs()}
    check_disjoint(validation, training_pairs=2000, training_seed=0)


def test_the_variants_change_what_they_say_and_nothing_else() -> None:
    spec = held_out_specs()[3]
    standard, no_tags = make_case(spec, "standard"), make_case(spec, "no-geometry")
    np.testing.assert_array_equal(standard.truth_hu, no_tags.truth_hu)
    np.testing.assert_array_equal(standard.inputs["pa"], no_tags.inputs["pa"])  # same pixels
    assert not np.allclose(standard.inputs["pa_matrix"], no_tags.inputs["pa_matrix"])  # defaults used
    turned = make_case(spec, "pose-5deg")
    assert not np.allclose(standard.inputs["lateral"], turned.inputs["lateral"])
    np.testing.assert_array_equal(standard.inputs["pa"], turned.inputs["pa"])


def test_the_table_names_its_machine_window_and_rows(tmp_path: Path) -> None:
    models = {"physics-baseline": PHYSICS_BASELINE, "again": PHYSICS_BASELINE}
    output = run_evaluation(models, tmp_path / "results.md", limit=2, variants=("standard", "no-geometry"),
                            log=lambda _: None, robust={"again"})  # fmt: skip
    text = output.read_text()
    assert "| physics-baseline |" in text and "[-1024, 2000]" in text and "CPUs" in text
    assert "By age band" in text and "| model | 0-1 y |" in text  # the first heads are infants
    results = json.loads(output.with_suffix(".json").read_text())
    scores = results["physics-baseline"]["standard"]
    assert len(scores) == 2 and all(np.isfinite(s["psnr_db"]) and 0 <= s["bone_dice"] <= 1 for s in scores)
    # The first heads are infants (0-1 y): their sutures are scored; the robustness run is "again"'s only.
    assert all(0.0 <= s["suture_accuracy"] <= 1.0 for s in scores)
    assert results["physics-baseline"]["no-geometry"] == [] and len(results["again"]["no-geometry"]) == 2


def test_a_sidecar_records_only_a_row_scored_on_its_own_file(tmp_path: Path) -> None:
    model = tmp_path / "baseline.onnx"
    model.write_bytes(PHYSICS_BASELINE.read_bytes())
    model.with_suffix(".json").write_text(PHYSICS_BASELINE.with_suffix(".json").read_text())
    output = run_evaluation({"mine": model}, tmp_path / "results.md", limit=1, variants=("standard",),
                            log=lambda _: None)  # fmt: skip
    results_path = output.with_suffix(".json")
    results = json.loads(results_path.read_text())
    assert results["mine"]["sha256"] == json.loads(model.with_suffix(".json").read_text())["sha256"]

    recorded = record_metrics(model, results_path, "mine")["metrics"]
    assert recorded["heads"] == 1 and recorded["row"] == "mine"
    assert recorded["psnr_db"] == round(results["mine"]["standard"][0]["psnr_db"], 4)
    assert json.loads(model.with_suffix(".json").read_text())["metrics"] == recorded

    with pytest.raises(ValueError, match="no row 'theirs'"):
        record_metrics(model, results_path, "theirs")
    results["mine"]["sha256"] = "0" * 64  # a row scored on another file
    results_path.write_text(json.dumps(results))
    with pytest.raises(ValueError, match="scored another file"):
        record_metrics(model, results_path, "mine")
    model.write_bytes(model.read_bytes() + b"\0")  # the file no longer matches its sidecar
    with pytest.raises(ValueError, match="does not match the sha256 of its sidecar"):
        record_metrics(model, results_path, "mine")


def test_breakdowns_average_each_group_and_close_the_last_age_band() -> None:
    from model.evaluate import age_band_of, breakdown

    assert [age_band_of({"age_y": a}) for a in (0.0, 0.99, 1.0, 11.9, 12.0, 18.0)] == [
        "0-1 y", "0-1 y", "1-3 y", "6-12 y", "12-18 y", "12-18 y"]  # fmt: skip
    rows = [{"age_y": 0.5, "bone_dice": 0.2}, {"age_y": 0.7, "bone_dice": float("nan")},
            {"age_y": 2.0, "bone_dice": 0.6}, {"age_y": 2.5, "bone_dice": 0.8}]  # fmt: skip
    lines = breakdown({"m": {"standard": rows}}, "age band", age_band_of, ["0-1 y", "1-3 y", "3-6 y"], ("bone_dice",))
    assert lines[3] == "| model | 0-1 y | 1-3 y |"  # a band with no heads gets no column
    assert lines[-1] == "| m | 0.2 | 0.7 |"  # NaN (undefined) left out of the mean
