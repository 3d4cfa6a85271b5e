"""Polychromatic radiograph physics: spectra, materials, detector, noise and scatter (numpy).

The volume is split into two basis materials by HU (ICRU-44 soft tissue and cortical bone); their
mass line integrals (g/cm^2, from model/drr.py) and the spectrum give the energy-integrated
detector signal with beam hardening. Spectra: spekpy; attenuation: xraydb (Elam tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import spekpy
import xraydb

# ICRU-44 compositions (mass fractions) and densities, as tabulated by NIST (X-Ray Mass Attenuation
# Coefficients, Table 2: "Tissue, Soft (ICRU-44)", "Bone, Cortical (ICRU-44)").
SOFT_TISSUE = {"H": 0.102, "C": 0.143, "N": 0.034, "O": 0.708, "Na": 0.002, "P": 0.003, "S": 0.003,
               "Cl": 0.002, "K": 0.003}  # fmt: skip
SOFT_TISSUE_G_CM3 = 1.06
CORTICAL_BONE = {"H": 0.034, "C": 0.155, "N": 0.042, "O": 0.435, "Na": 0.001, "Mg": 0.002, "P": 0.103,
                 "S": 0.003, "Ca": 0.225}  # fmt: skip
CORTICAL_BONE_G_CM3 = 1.92
WATER = {"H": 0.111894, "O": 0.888106}
# CsI:Tl scintillator of flat panels, ~0.5-0.6 mm thick (e.g. Varex, Canon, Carestream data sheets).
CSI_G_CM3 = 4.51
# The effective energy at which HU are defined for the HU -> material split (a 120 kVp CT beam).
CT_EFFECTIVE_KEV = 70.0
ANODE_ANGLE_DEG = 12.0  # typical general-radiography tube


def mass_attenuation_cm2_g(fractions: dict[str, float], energies_kev: np.ndarray) -> np.ndarray:
    """Total mass attenuation of a mixture (sum of fractions x Elam element tables)."""
    energies_ev = np.asarray(energies_kev, dtype=float) * 1000.0
    return sum(w * np.asarray(xraydb.mu_elam(element, energies_ev)) for element, w in fractions.items())


def cortical_bone_hu() -> float:
    """HU of ICRU-44 cortical bone at the CT effective energy (~1560 HU with Elam's tables)."""
    mu_bone = CORTICAL_BONE_G_CM3 * mass_attenuation_cm2_g(CORTICAL_BONE, np.array([CT_EFFECTIVE_KEV]))[0]
    mu_water = mass_attenuation_cm2_g(WATER, np.array([CT_EFFECTIVE_KEV]))[0]
    return float(1000.0 * (mu_bone / mu_water - 1.0))


def basis_densities(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(soft tissue, cortical bone) partial densities in g/cm^3 per voxel from HU.

    Below 0 HU: soft tissue diluted by air; from 0 HU up to cortical bone: a soft-bone mixture by
    volume, the usual two-material split of DRR simulators.
    """
    bone_fraction = np.clip(hu / cortical_bone_hu(), 0.0, 1.0)
    soft_fraction = np.where(hu < 0.0, np.clip((hu + 1000.0) / 1000.0, 0.0, 1.0), 1.0 - bone_fraction)
    return soft_fraction * SOFT_TISSUE_G_CM3, bone_fraction * CORTICAL_BONE_G_CM3


@dataclass(frozen=True)
class Beam:
    kvp: float
    filtration_mm_al: float  # total (inherent + added)
    mas: float


@dataclass(frozen=True)
class Spectrum:
    energies_kev: np.ndarray
    fluence_per_cm2_mas_at_1m: np.ndarray  # photons per energy bin


@lru_cache(maxsize=512)
def _spectrum(kvp: float, filtration_mm_al: float) -> Spectrum:
    spek = spekpy.Spek(kvp=kvp, th=ANODE_ANGLE_DEG, dk=1.0)
    spek.filter("Al", filtration_mm_al)
    energies, fluence = spek.get_spectrum()
    return Spectrum(np.asarray(energies), np.asarray(fluence))


def spectrum(beam: Beam) -> Spectrum:
    # Generators set kV in 1 kV steps; 0.1 mm Al is below filtration tolerances. Coarse keys let the
    # cache serve bulk generation (spekpy takes ~0.25 s per spectrum).
    return _spectrum(float(round(beam.kvp)), round(beam.filtration_mm_al, 1))


def csi_absorption(energies_kev: np.ndarray, thickness_mm: float) -> np.ndarray:
    """Fraction of photons absorbed in a CsI layer."""
    mu_per_cm = xraydb.material_mu("CsI", np.asarray(energies_kev) * 1000.0, density=CSI_G_CM3)
    return 1.0 - np.exp(-mu_per_cm * thickness_mm / 10.0)


@dataclass(frozen=True)
class Detector:
    pitch_mm: float
    csi_mm: float = 0.6
    electronic_noise_photons: float = 5.0  # read-out noise in photons at the mean energy


@dataclass(frozen=True)
class Signal:
    mean_kev: np.ndarray  # expected energy-integrated signal per pixel
    variance_kev2: np.ndarray  # its quantum variance (compound Poisson)
    flat_kev: float  # the same behind no object
    flat_photons: float  # absorbed photons per pixel behind no object


def primary_signal(
    soft_g_cm2: np.ndarray, bone_g_cm2: np.ndarray, beam: Beam, detector: Detector, sid_mm: float
) -> Signal:
    """Photons per pixel from the spekpy fluence at the detector (inverse square), attenuated per
    energy bin by both basis materials, absorbed in CsI and weighted by their energy."""
    spec = spectrum(beam)
    e = spec.energies_kev
    pixel_cm2 = (detector.pitch_mm / 10.0) ** 2
    photons = spec.fluence_per_cm2_mas_at_1m * beam.mas * (1000.0 / sid_mm) ** 2 * pixel_cm2
    absorbed = photons * csi_absorption(e, detector.csi_mm)
    mu_soft, mu_bone = mass_attenuation_cm2_g(SOFT_TISSUE, e), mass_attenuation_cm2_g(CORTICAL_BONE, e)
    transmitted = np.exp(-soft_g_cm2[..., None] * mu_soft - bone_g_cm2[..., None] * mu_bone)
    return Signal(
        mean_kev=transmitted @ (absorbed * e),
        variance_kev2=transmitted @ (absorbed * e**2),  # each absorbed photon deposits E
        flat_kev=float(np.sum(absorbed * e)),
        flat_photons=float(np.sum(absorbed)),
    )


def gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable Gaussian blur by FFT with edge padding (no SciPy needed)."""
    if sigma_px <= 0:
        return image
    pad = int(np.ceil(3 * sigma_px))
    padded = np.pad(image, pad, mode="edge")
    out = padded
    for axis in (0, 1):
        n = padded.shape[axis]
        frequencies = np.fft.rfftfreq(n)
        kernel = np.exp(-2 * (np.pi * frequencies * sigma_px) ** 2)
        shape = [1, 1]
        shape[axis] = len(kernel)
        out = np.fft.irfft(np.fft.rfft(out, axis=axis) * kernel.reshape(shape), n=n, axis=axis)
    return out[pad:-pad, pad:-pad]


@dataclass(frozen=True)
class Acquisition:
    """Physical degradations of one exposure (domain-randomised in model/acquisition.py)."""

    scatter_to_primary: float  # mean SPR behind the head (with an anti-scatter grid ~0.1-0.4)
    scatter_sigma_mm: float  # width of the scatter kernel at the detector
    blur_sigma_mm: float  # detector and focal-spot blur
    heel_gradient: float  # relative intensity change across the detector (heel effect)


def expose(
    primary: Signal, detector: Detector, acquisition: Acquisition, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """(noisy raw detector signal, flat-field signal) in keV per pixel: what the panel reads out."""
    heel = 1.0 + acquisition.heel_gradient * np.linspace(-0.5, 0.5, primary.mean_kev.shape[1])[None, :]
    mean = primary.mean_kev * heel
    scatter = acquisition.scatter_to_primary * gaussian_blur(mean, acquisition.scatter_sigma_mm / detector.pitch_mm)
    # Scattered photons are Poisson too, with about the primary's spectrum.
    variance = primary.variance_kev2 * heel * (1.0 + scatter / np.maximum(mean, 1e-9))
    quanta = mean + scatter + rng.standard_normal(mean.shape) * np.sqrt(variance)
    # The scintillator's light spread blurs the quanta; read-out noise comes after it.
    blurred = gaussian_blur(quanta, acquisition.blur_sigma_mm / detector.pitch_mm)
    mean_photon_kev = primary.flat_kev / primary.flat_photons
    readout = rng.standard_normal(mean.shape) * detector.electronic_noise_photons * mean_photon_kev
    return blurred + readout, primary.flat_kev * (1.0 + acquisition.scatter_to_primary)
