"""The procedural skull phantom measured like a patient: growth norms, conditions, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from model import anatomy, growth
from model.skull import CONDITIONS, Label, parameters, phantom

FINE = ((240, 240, 240), 1.0)  # 1 mm: calvarial thickness is 1.5-6 mm
COARSE = ((160, 160, 160), 1.5)
# Normal head circumference: within 2.5 SD of the sex-specific medians.
HC_SDS = 2.5
# Thickness is counted in voxels along rays: +-1 voxel.
THICKNESS_TOLERANCE_MM = 1.0
NORMAL_INDEX = (0.76, 0.88)


@pytest.fixture(scope="module")
def by_age() -> dict[float, object]:
    return {
        age: phantom(parameters(age, "normal", seed=int(age), pose=False), *FINE) for age in (0.0, 1.0, 4.0, 10.0, 18.0)
    }


@pytest.mark.parametrize("age", [0.0, 1.0, 4.0, 10.0, 18.0])
def test_normal_heads_fall_inside_the_cited_norms(by_age, age: float) -> None:  # type: ignore[no-untyped-def]
    labels = by_age[age].labels
    hc = anatomy.head_circumference_mm(labels, 1.0)
    low = growth.head_circumference_mm(age, "F") - HC_SDS * growth.HC_SD_MM
    high = growth.head_circumference_mm(age, "M") + HC_SDS * growth.HC_SD_MM
    assert low <= hc <= high, hc
    assert NORMAL_INDEX[0] <= anatomy.cephalic_index(labels) <= NORMAL_INDEX[1]
    thickness = anatomy.calvarial_thickness_mm(labels, 1.0)
    assert abs(thickness - growth.calvarial_thickness_mm(age)) <= THICKNESS_TOLERANCE_MM + 0.3  # +-10 % variation
    if age < 4:
        assert thickness < 3.0
    low_ml, high_ml = growth.ICV_RANGE_ML[age]
    assert low_ml <= anatomy.intracranial_volume_ml(labels, 1.0) <= high_ml


def test_growth_is_monotonic_and_the_newborn_has_open_sutures(by_age) -> None:  # type: ignore[no-untyped-def]
    hcs = [anatomy.head_circumference_mm(by_age[a].labels, 1.0) for a in sorted(by_age)]
    assert hcs == sorted(hcs)
    newborn, adult = by_age[0.0], by_age[18.0]

    def open_fraction(labels: np.ndarray) -> float:
        return np.count_nonzero(labels == Label.SUTURE) / np.count_nonzero(np.isin(labels, anatomy.VAULT))

    # Wide sutures and a fontanelle at birth; thin lines (at most a voxel) at 18.
    assert open_fraction(newborn.labels) > 4 * open_fraction(adult.labels)
    # Bone HU rises with age; sinuses appear with age.
    assert newborn.hu[newborn.labels == Label.OUTER_TABLE].mean() < adult.hu[adult.labels == Label.OUTER_TABLE].mean()
    assert np.count_nonzero(newborn.labels == Label.SINUS) < np.count_nonzero(adult.labels == Label.SINUS)


@pytest.fixture(scope="module")
def conditions() -> dict[str, object]:
    return {c: phantom(parameters(1.0, c, seed=42, pose=False), *COARSE) for c in CONDITIONS}


def _axes_mm(shape: tuple[int, ...], voxel_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d, h, w = shape
    axis = [(np.arange(n) - (n - 1) / 2) * voxel_mm for n in (d, h, w)]
    return np.meshgrid(*axis, indexing="ij")  # z, y, x


def test_sagittal_synostosis_is_scaphocephalic_with_a_fused_sagittal_suture(conditions) -> None:  # type: ignore[no-untyped-def]
    normal, sagittal = conditions["normal"], conditions["sagittal"]
    assert anatomy.cephalic_index(sagittal.labels) < 0.75 < anatomy.cephalic_index(normal.labels)
    z, y, x = _axes_mm(normal.labels.shape, COARSE[1])
    midline_vertex = (np.abs(x) < 2.0) & (y > 15.0) & (y < 40.0) & (z > 20.0)  # between bregma and lambda
    assert np.count_nonzero((normal.labels == Label.SUTURE) & midline_vertex) > 0
    assert np.count_nonzero((sagittal.labels == Label.SUTURE) & midline_vertex) == 0


# Where each condition may change the head (LPS: -y anterior, +x patient left), allowing 10 mm
# (15 mm across the midline, where one-sided shapes fade out) around the separating planes.
def _region(condition: str, side: str, z, y, x):  # type: ignore[no-untyped-def]
    same_side = x > -15.0 if side == "L" else x < 15.0
    return {
        "metopic": y < 10.0,
        "coronal-left": y < 10.0,
        "coronal-right": y < 10.0,
        "lambdoid": (y > -10.0) & same_side,
        "positional": same_side,
    }[condition]


@pytest.mark.parametrize("condition", ["metopic", "coronal-left", "coronal-right", "lambdoid", "positional"])
def test_each_condition_changes_the_head_where_it_should_and_only_there(conditions, condition: str) -> None:  # type: ignore[no-untyped-def]
    normal, other = conditions["normal"], conditions[condition]
    changed = normal.labels != other.labels
    assert np.count_nonzero(changed) > 1000
    z, y, x = _axes_mm(changed.shape, COARSE[1])
    outside = changed & ~_region(condition, other.params.side, z, y, x)
    assert np.count_nonzero(outside) <= 0.01 * np.count_nonzero(changed)


@pytest.mark.parametrize(("condition", "side"), [("coronal-left", 1.0), ("coronal-right", -1.0)])
def test_unicoronal_synostosis_fuses_one_coronal_suture(conditions, condition: str, side: float) -> None:  # type: ignore[no-untyped-def]
    z, y, x = _axes_mm(conditions["normal"].labels.shape, COARSE[1])
    lateral_front = (side * x > 12.0) & (y < 0.0)  # away from the midline and the fontanelle
    for name, expected_open in (("normal", True), (condition, False)):
        open_voxels = np.count_nonzero((conditions[name].labels == Label.SUTURE) & lateral_front)
        assert (open_voxels > 0) == expected_open, name


def test_positional_plagiocephaly_keeps_every_suture_open(conditions) -> None:  # type: ignore[no-untyped-def]
    sutures = [np.count_nonzero(conditions[c].labels == Label.SUTURE) for c in ("normal", "positional")]
    assert abs(sutures[1] - sutures[0]) <= 0.1 * sutures[0]


def test_phantoms_are_deterministic_by_seed_and_differ_between_seeds() -> None:
    a = phantom(parameters(6.0, "normal", seed=3), *COARSE)
    b = phantom(parameters(6.0, "normal", seed=3), *COARSE)
    c = phantom(parameters(6.0, "normal", seed=4), *COARSE)
    np.testing.assert_array_equal(a.hu, b.hu)
    assert np.count_nonzero(a.labels != c.labels) > 10_000


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="condition"):
        parameters(2.0, "oxycephaly")
    with pytest.raises(ValueError, match="age_y"):
        parameters(25.0)
