"""The held-out set and the evaluation table: fixed, disjoint from training, every band and condition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.evaluate import AGE_BANDS_Y, VALIDATION_STREAM, check_disjoint, held_out_specs, make_case, run_evaluation
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
    results = json.loads(output.with_suffix(".json").read_text())
    scores = results["physics-baseline"]["standard"]
    assert len(scores) == 2 and all(np.isfinite(s["psnr_db"]) and 0 <= s["bone_dice"] <= 1 for s in scores)
    # The first heads are infants (0-1 y): their sutures are scored; the robustness run is "again"'s only.
    assert all(0.0 <= s["suture_accuracy"] <= 1.0 for s in scores)
    assert results["physics-baseline"]["no-geometry"] == [] and len(results["again"]["no-geometry"]) == 2
