"""Radiograph physics as numerics: attenuation data, beam hardening, noise statistics, vendor look."""

from __future__ import annotations

import numpy as np
import pytest
import xraydb

from model import xray
from model.acquisition import random_pair
from model.dx_writer import OPTIONAL_GEOMETRY, SOP_CLASSES, radiograph_dataset, study_for_seed
from model.geometry import RoomDefaults
from model.radiograph import display_values, read_view
from model.simulator import nominal_geometry, simulate_radiographs
from model.skull import parameters, phantom
from model.vendor import Presentation, for_processing, present
from tests.conftest import dciodvfy_errors

BEAM = xray.Beam(kvp=70.0, filtration_mm_al=2.5, mas=5.0)
DETECTOR = xray.Detector(pitch_mm=0.15)
# NIST XCOM, water, 60 keV: mu/rho = 0.2059 cm^2/g. Elam's tables (xraydb) agree within ~1 %.
NIST_WATER_60KEV_CM2_G = 0.2059


def test_mixture_attenuation_matches_xraydb_and_nist() -> None:
    energies = np.array([30.0, 60.0, 80.0])
    ours = xray.mass_attenuation_cm2_g(xray.WATER, energies)
    np.testing.assert_allclose(ours, xraydb.material_mu("water", energies * 1000.0) / 1.0, rtol=1e-3)
    assert ours[1] == pytest.approx(NIST_WATER_60KEV_CM2_G, rel=0.02)
    # ICRU-44 cortical bone at a 70 keV effective energy: within the 1300-2000 HU that clinical CT
    # reports for dense cortical bone.
    assert 1300.0 < xray.cortical_bone_hu() < 2000.0


def test_hu_split_conserves_the_endpoints() -> None:
    soft, bone = xray.basis_densities(np.array([-1000.0, 0.0, xray.cortical_bone_hu()]))
    np.testing.assert_allclose(soft, [0.0, xray.SOFT_TISSUE_G_CM3, 0.0], atol=1e-9)
    np.testing.assert_allclose(bone, [0.0, 0.0, xray.CORTICAL_BONE_G_CM3], atol=1e-9)


def test_beam_hardening_and_the_thin_object_limit() -> None:
    thickness = np.array([[1e-4, 1.0, 5.0, 10.0, 20.0]])  # g/cm^2 of soft tissue
    signal = xray.primary_signal(thickness, np.zeros_like(thickness), BEAM, DETECTOR, 1000.0)
    effective_mu = -np.log(signal.mean_kev / signal.flat_kev) / thickness
    assert np.all(np.diff(effective_mu[0]) < 0)  # harder beam behind more tissue
    # Thin objects: the detector-weighted mean attenuation of the spectrum (first-order expansion).
    spec = xray.spectrum(BEAM)
    weights = spec.fluence_per_cm2_mas_at_1m * xray.csi_absorption(spec.energies_kev, DETECTOR.csi_mm)
    weights = weights * spec.energies_kev
    expected = np.sum(weights * xray.mass_attenuation_cm2_g(xray.SOFT_TISSUE, spec.energies_kev)) / weights.sum()
    assert effective_mu[0, 0] == pytest.approx(expected, rel=1e-3)


def test_noise_has_the_compound_poisson_variance() -> None:
    flat_field = np.full((400, 400), 2.0)  # 2 g/cm^2 of soft tissue everywhere
    signal = xray.primary_signal(flat_field, np.zeros_like(flat_field), BEAM, DETECTOR, 1000.0)
    still = xray.Acquisition(scatter_to_primary=0.0, scatter_sigma_mm=20.0, blur_sigma_mm=0.0, heel_gradient=0.0)
    raw, _flat = xray.expose(signal, DETECTOR, still, np.random.default_rng(0))
    readout = DETECTOR.electronic_noise_photons * signal.flat_kev / signal.flat_photons
    expected = signal.variance_kev2[0, 0] + readout**2
    assert raw.mean() == pytest.approx(signal.mean_kev[0, 0], rel=1e-3)
    # 160,000 samples: the variance estimate's relative standard error is ~0.35 %.
    assert raw.var() == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("monochrome1", [False, True])
def test_presentation_keeps_bone_bright_in_monochrome2_and_inverts_for_monochrome1(monochrome1: bool) -> None:
    attenuation = np.linspace(0.0, 5.0, 200)[None, :].repeat(50, axis=0)
    raw = 1e4 * np.exp(-attenuation)
    look = Presentation(unsharp_amount=0.0, unsharp_sigma_mm=10.0, gamma=1.0, low_percentile=0.0,
                        high_percentile=100.0, bits=12, monochrome1=monochrome1)  # fmt: skip
    stored = present(raw, 1e4, 0.15, look).astype(int)
    assert stored.max() <= 4095 and stored.min() >= 0
    row = stored[25]
    assert np.all(np.diff(row) <= 0) if monochrome1 else np.all(np.diff(row) >= 0)


@pytest.mark.parametrize("linear", [False, True])
def test_a_for_processing_image_reads_back_as_its_attenuation(linear: bool) -> None:
    """Raw signal stored linear (bone dark) or log: the reader recovers -log(signal / air) either way."""
    attenuation = np.linspace(0.0, 4.0, 200)[None, :].repeat(50, axis=0)
    look = for_processing(Presentation(1.0, 10.0, 1.2, 1.0, 99.0, 16, True), linear)
    stored = present(1e4 * np.exp(-attenuation), 1e4, 0.15, look)
    geometry = nominal_geometry(random_pair(np.random.default_rng(0))[0])
    ds = radiograph_dataset(stored, geometry, study_for_seed(0), 1, False, 16, storage="DX-processing",
                            relationship=look.relationship)  # fmt: skip
    values = display_values(ds)
    if linear:  # 16-bit quantisation of exp(-4) ~ 1.2k of 65k counts: ~1e-3 relative error in log
        np.testing.assert_allclose(values, attenuation, atol=2e-3)
    else:  # log stored: an affine image of the attenuation, bone bright
        slope, intercept = np.polyfit(attenuation.ravel(), values.ravel(), 1)
        np.testing.assert_allclose(values, slope * attenuation + intercept, atol=abs(slope) * 1e-3)
        assert slope > 0


@pytest.fixture(scope="module", params=["DX", "CR", "DX-processing"])
def simulated_pair(request):  # type: ignore[no-untyped-def]
    head = phantom(parameters(3.0, "normal", seed=9), (96, 96, 96), 2.5)
    omit = frozenset({"DistanceSourceToPatient"})
    return simulate_radiographs(head.hu, 2.5, study_for_seed(9), seed=9, omit=omit, storage=request.param)


@pytest.mark.parametrize("storage", ["DX", "CR", "DX-processing"])
def test_every_object_type_can_leave_out_all_optional_geometry(storage: str) -> None:
    head = phantom(parameters(3.0, "normal", seed=9), (48, 48, 48), 5.0)
    pa, lateral = simulate_radiographs(head.hu, 5.0, study_for_seed(9), seed=9, omit=frozenset(OPTIONAL_GEOMETRY),
                                       storage=storage, bulk=True)  # fmt: skip
    for view in (pa, lateral):
        assert not any(keyword in view.dataset for keyword in OPTIONAL_GEOMETRY)
        read_view(view.dataset)  # the documented defaults apply
        site = RoomDefaults(view.setup.sid_mm, view.setup.sid_mm - view.setup.sod_mm)  # this room, configured
        geometry = read_view(view.dataset, site)[1]
        assert (geometry.sid_mm, geometry.sod_mm) == pytest.approx((view.setup.sid_mm, view.setup.sod_mm))


def test_simulated_pair_is_valid_dicom_with_truthful_geometry(simulated_pair, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for view in simulated_pair:
        path = tmp_path / f"{view.setup.view}.dcm"
        view.dataset.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == []
        assert view.dataset.SOPClassUID == SOP_CLASSES[view.setup.look.storage]
        name, geometry, notes = read_view(view.dataset)
        assert name == view.setup.view
        assert geometry.sid_mm == pytest.approx(view.setup.sid_mm, abs=0.1)
        if "EstimatedRadiographicMagnificationFactor" in view.dataset:  # SOD = SID / magnification
            assert geometry.sod_mm == pytest.approx(view.setup.sod_mm, abs=0.1)  # DS precision of the tags
        else:  # CR has no magnification attribute: without SOD the documented default is used, and said
            assert any("DistanceSourceToPatient" in note for note in notes), notes
        assert geometry.pitch_mm == pytest.approx((view.setup.pitch_mm,) * 2, abs=1e-4)
        assert "DistanceSourceToPatient" not in view.dataset


def test_the_skull_is_brighter_than_the_background(simulated_pair) -> None:  # type: ignore[no-untyped-def]
    for view in simulated_pair:
        values = display_values(view.dataset)
        rows, cols = values.shape
        centre = values[rows // 3 : rows // 2, cols // 3 : 2 * cols // 3].mean()
        corner = values[: rows // 10, : cols // 10].mean()
        assert centre > corner
