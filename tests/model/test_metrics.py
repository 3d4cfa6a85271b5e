"""Metrics against independent implementations (scikit-image) and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from model import metrics


@pytest.fixture(scope="module")
def volumes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:40, :44, :48]
    truth = np.where((x - 24) ** 2 + (y - 22) ** 2 + (z - 20) ** 2 < 15**2, 1200.0, -1000.0)
    predicted = truth + rng.normal(0.0, 150.0, truth.shape)
    return predicted, truth


def test_psnr_and_ssim_agree_with_scikit_image(volumes: tuple[np.ndarray, np.ndarray]) -> None:
    predicted, truth = volumes
    low, high = metrics.HU_WINDOW
    p, t = (np.clip(v, low, high) for v in (predicted, truth))
    assert metrics.psnr_db(predicted, truth) == pytest.approx(
        peak_signal_noise_ratio(t, p, data_range=high - low), abs=1e-9
    )
    reference = structural_similarity(
        (t - low) / (high - low), (p - low) / (high - low), data_range=1.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )  # fmt: skip
    assert metrics.ssim(predicted, truth) == pytest.approx(reference, abs=1e-9)
    assert metrics.ssim(truth, truth) == pytest.approx(1.0)


def test_surface_distances_of_concentric_spheres_are_their_radial_gap() -> None:
    z, y, x = np.mgrid[:64, :64, :64]
    r = np.sqrt((x - 31.5) ** 2 + (y - 31.5) ** 2 + (z - 31.5) ** 2)
    inner, outer = r < 20.0, r < 24.0
    # Surfaces are voxel layers 4 voxels apart radially: 4 x 1.5 mm, within a voxel of staircase.
    assert metrics.assd_mm(inner, outer, 1.5) == pytest.approx(6.0, abs=1.5)
    assert metrics.hd95_mm(inner, outer, 1.5) == pytest.approx(6.0, abs=1.5)
    assert metrics.assd_mm(inner, inner, 1.5) == 0.0
    assert metrics.dice(inner, outer) == pytest.approx(2 * inner.sum() / (inner.sum() + outer.sum()))


@pytest.mark.parametrize(
    ("age_y", "condition", "seed"), [(0.5, "normal", 3), (4.0, "sagittal", 4), (14.0, "metopic", 5)]
)
def test_hu_measurements_agree_with_the_phantoms_labels(age_y: float, condition: str, seed: int) -> None:
    """Measured from HU alone (as on a reconstruction), ICV and cephalic index match what the label
    map says: within 8 % (ICV: the HU mask also takes the 1.5 mm CSF layer and closes sutures) and
    0.02 (one voxel of breadth or length at 1.5 mm is ~0.01 of the index)."""
    from model import anatomy
    from model.skull import parameters, phantom

    head = phantom(parameters(age_y, condition, seed), (160, 160, 160), 1.5)
    icv_hu, icv_labels = metrics.intracranial_volume_ml(head.hu, 1.5), anatomy.intracranial_volume_ml(head.labels, 1.5)
    assert icv_hu == pytest.approx(icv_labels, rel=0.08)
    assert metrics.cephalic_index(head.hu) == pytest.approx(anatomy.cephalic_index(head.labels), abs=0.02)


def test_intracranial_volume_of_a_blurred_skull_is_read_at_the_bone_threshold() -> None:
    """A spherical cavity (brain 32 HU, radius 50 mm) in an 8 mm shell of 1200 HU, blurred by a
    Gaussian of sigma 1.5 mm as a reconstruction blurs: the 300 HU surface of a blurred step lies
    sigma * Phi^-1((300 - 32) / (1200 - 32)) = 0.74 sigma inside the cavity, so the volume is that
    of a sphere 1.1 mm smaller. Within 2 %: voxel staircase (< 1 % at 33 voxels' radius) and the
    shell's curvature (sigma / R = 0.03). A cavity cut at brain-like values (< 100 HU) ends 1.57 sigma
    inside and reads 8 % less: this fails."""
    from scipy import ndimage
    from scipy.special import ndtri

    voxel_mm, radius_mm, shell_mm, sigma_mm = 1.5, 50.0, 8.0, 1.5
    z, y, x = (np.mgrid[:96, :96, :96] - 47.5) * voxel_mm
    r = np.sqrt(x**2 + y**2 + z**2)
    hu = np.where(r < radius_mm, 32.0, np.where(r < radius_mm + shell_mm, 1200.0, -1000.0))
    blurred = ndimage.gaussian_filter(hu, sigma_mm / voxel_mm)
    shift_mm = -sigma_mm * ndtri((metrics.BONE_HU - 32.0) / (1200.0 - 32.0))
    expected_ml = 4.0 / 3.0 * np.pi * (radius_mm - shift_mm) ** 3 / 1000.0
    assert metrics.intracranial_volume_ml(blurred, voxel_mm) == pytest.approx(expected_ml, rel=0.02)


@pytest.mark.parametrize(("age_y", "condition", "seed"), [(0.3, "sagittal", 1), (0.5, "coronal-left", 2),
                                                         (0.9, "lambdoid", 3)])  # fmt: skip
def test_suture_patency_reads_the_truth_right_and_a_blurred_head_as_fused(age_y: float, condition: str,
                                                                          seed: int) -> None:  # fmt: skip
    """On the phantom's own HU every suture reads as the labels say (open unless fused by the
    condition or by age); smoothed far past the skull's thickness, no suture can be read at all."""
    from scipy import ndimage

    from model.skull import parameters, phantom, suture_regions

    p = parameters(age_y, condition, seed)
    head = phantom(p, (128, 128, 128), 1.5)
    regions = suture_regions(p, (128, 128, 128), 1.5)
    assert set(regions) == {"coronal-L", "coronal-R", "sagittal", "metopic", "lambdoid-L", "lambdoid-R"}
    bone = head.hu > metrics.BONE_HU
    read = {name: metrics.suture_open(head.hu, region, bone) for name, region in regions.items()}
    assert read == {name: name not in p.fused for name in regions} and not all(read.values())
    smeared = ndimage.uniform_filter(head.hu, 9)  # 13.5 mm boxes: no gap survives
    assert all(metrics.suture_open(smeared, region, bone) is None for region in regions.values())
