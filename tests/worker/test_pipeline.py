"""Radiograph decoding and the physics baseline on a simulated pair with known ground truth."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless

from model.radiograph import RadiographError
from model.simulate import simulate_pair
from service.settings import PHYSICS_BASELINE
from tests.conftest import require
from worker.pipeline import reconstruct
from worker.runtime import cached

# The baseline puts the calvarium as a shell just inside the head's silhouette: on the ellipsoid
# phantom its bone overlaps the truth's by Dice 0.22 (6 months, 2 mm calvarium) to 0.43 (measured
# on seeds 101-103 and 0-7). 0.15 still fails an empty or misplaced skull without tuning to a seed.
MIN_BONE_DICE = 0.15
BONE_HU = 300.0


def bone_dice(volume: np.ndarray, truth: np.ndarray) -> float:
    a, b = volume > BONE_HU, truth > BONE_HU
    return float(2 * np.sum(a & b) / (np.sum(a) + np.sum(b)))


@pytest.fixture(scope="module")
def pair():  # type: ignore[no-untyped-def]
    return simulate_pair(age_y=3.0, seed=7)


@pytest.fixture(scope="module")
def volume(pair) -> np.ndarray:  # type: ignore[no-untyped-def]
    return reconstruct(pair.pa, pair.lateral, cached(PHYSICS_BASELINE))[0]


@pytest.mark.parametrize(("age_y", "seed"), [(0.5, 101), (8.0, 102), (16.0, 103)])
def test_baseline_finds_the_skull_where_it_is(age_y: float, seed: int) -> None:
    pair = simulate_pair(age_y, seed)
    volume, _ = reconstruct(pair.pa, pair.lateral, cached(PHYSICS_BASELINE))
    assert bone_dice(volume, pair.truth_hu) >= MIN_BONE_DICE


def test_a_wrong_orientation_is_visibly_worse(pair, volume) -> None:  # type: ignore[no-untyped-def]
    mirrored = copy.deepcopy(pair.lateral)
    mirrored.PatientOrientation = ["F", "P"]  # claims the image is turned by 90 degrees
    wrong, _ = reconstruct(pair.pa, mirrored, cached(PHYSICS_BASELINE))
    assert bone_dice(wrong, pair.truth_hu) < bone_dice(volume, pair.truth_hu) - 0.1


def test_monochrome1_input_gives_the_same_volume(volume) -> None:  # type: ignore[no-untyped-def]
    inverted = simulate_pair(age_y=3.0, seed=7, monochrome1=True)
    again, _ = reconstruct(inverted.pa, inverted.lateral, cached(PHYSICS_BASELINE))
    np.testing.assert_allclose(again, volume, atol=0.05)


def _compress(tool: str, flags: list[str], source: Path, target: Path) -> Path:
    subprocess.run([require(tool), *flags, str(source), str(target)], check=True, capture_output=True)
    return target


@pytest.mark.parametrize("codec", ["jpeg-lossless", "rle", "jpeg2000-lossless"])
def test_compressed_inputs_decode_to_the_same_volume(pair, volume, codec: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plain = [tmp_path / "pa.dcm", tmp_path / "lateral.dcm"]
    pair.pa.save_as(plain[0], enforce_file_format=True)
    pair.lateral.save_as(plain[1], enforce_file_format=True)
    compressed = []
    for path in plain:
        target = tmp_path / f"{codec}-{path.name}"
        if codec == "jpeg-lossless":
            compressed.append(_compress("dcmcjpeg", ["+e1"], path, target))  # process 14 SV1, DCMTK
        elif codec == "rle":
            compressed.append(_compress("dcmcrle", [], path, target))  # DCMTK
        else:
            ds = dcmread(path)
            ds.compress(JPEG2000Lossless)  # pylibjpeg-openjpeg
            ds.save_as(target, enforce_file_format=True)
            compressed.append(target)
    datasets = [dcmread(p) for p in compressed]
    assert datasets[0].file_meta.TransferSyntaxUID.is_compressed
    again, _ = reconstruct(datasets[0], datasets[1], cached(PHYSICS_BASELINE))
    np.testing.assert_allclose(again, volume, atol=0.05)


def test_views_in_the_wrong_slots_are_refused(pair) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RadiographError, match="pa input is a LL view"):
        reconstruct(pair.lateral, pair.pa, cached(PHYSICS_BASELINE))
