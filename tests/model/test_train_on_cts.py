"""`psct train --ct-dir`: training pairs from a folder of real CTs, through the real-CT path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.ct_volume import CtError, prepare_ct
from model.dataset import PairStream, ct_sources
from model.export import data_description
from model.grid import OUTPUT_SHAPE, VOXEL_MM
from model.skull import parameters, phantom
from model.train import TrainConfig, train
from tests.test_cli import run

TINY = Path(__file__).resolve().parents[2] / "model" / "configs" / "tiny.json"


def _write_nifti(hu: np.ndarray, voxel_mm: float, path: Path) -> None:
    """A (z, y, x) LPS volume as NIfTI (RAS+): what a hospital's converted CT looks like."""
    d, h, w = hu.shape
    ras = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    ras[:3, 3] = [-(w - 1) / 2 * voxel_mm, -(h - 1) / 2 * voxel_mm, -(d - 1) / 2 * voxel_mm]
    data = np.ascontiguousarray(hu.transpose(2, 1, 0)[::-1, ::-1, :])
    nibabel.save(nibabel.Nifti1Image(data, ras), path)


@pytest.fixture(scope="module")
def ct_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cts")
    for k, (age, condition) in enumerate(((1.0, "normal"), (9.0, "sagittal"))):
        hu = phantom(parameters(age, condition, seed=40 + k), (80, 80, 80), 3.0).hu
        _write_nifti(np.clip(hu, -1024, 3071).astype(np.float32), 3.0, folder / f"head{k}.nii.gz")
    (folder / "README.txt").write_text("not a CT: skipped")
    return folder


def test_a_ct_folder_lists_each_ct_once(ct_dir: Path, tmp_path: Path) -> None:
    assert [p.name for p in ct_sources(ct_dir)] == ["head0.nii.gz", "head1.nii.gz"]
    with pytest.raises(CtError, match="holds no CT"):
        ct_sources(tmp_path)


def test_a_ct_pair_is_that_ct_pooled_under_a_simulated_room(ct_dir: Path, tmp_path: Path) -> None:
    sources = ct_sources(ct_dir)
    stream = PairStream(4, base_seed=3, truth_pool=2, cache=tmp_path, ct_sources=sources)
    pair = stream[1]
    expected = F.avg_pool3d(torch.from_numpy(prepare_ct(sources[1], OUTPUT_SHAPE, VOXEL_MM))[None, None], 2)
    np.testing.assert_array_equal(pair.hu, np.rint(expected[0, 0].numpy()))
    assert pair.spec.condition == "real CT head1.nii.gz" and math.isnan(pair.spec.age_y)
    assert pair.pa.shape == (1, 256, 256) and 0.0 <= pair.pa.min() and pair.pa.max() <= 1.0
    # Cached under the folder's own name: never confused with the phantom pair of the same index.
    assert stream.path(1).name.startswith("ct") and PairStream(4, 3, 2, tmp_path).path(1) != stream.path(1)
    again = PairStream(4, base_seed=3, truth_pool=2, cache=tmp_path, ct_sources=sources)[1]
    np.testing.assert_array_equal(again.pa, pair.pa)


def test_training_runs_on_a_ct_folder_and_records_it(ct_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig.from_dict({**json.loads(TINY.read_text()), "steps": 2, "ct_dir": str(ct_dir)})
    summary = train(config, tmp_path / "run", tmp_path / "cache", log=lambda _: None)
    assert summary["step"] == 2
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["ct_dir"] == str(ct_dir) and recorded["digest"] != TrainConfig.from_json(TINY).digest()
    assert data_description(recorded) == f"real head CTs from {ct_dir}, simulated radiographs (model/dataset.py)"
    pairs = [json.loads(line)["pair"] for line in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert sorted(pairs) == [0, 1]


def test_the_cli_names_a_folder_without_cts(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run("train", "--config", str(TINY), "-o", str(tmp_path / "run"), "--ct-dir", str(tmp_path / "empty"))
    assert result.returncode == 2 and "holds no CT" in result.stderr
