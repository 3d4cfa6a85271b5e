"""Analytic test head and its exact radiographs (numpy, pure).

Nested ellipsoids (scalp, calvarium, brain, ventricles, a mandible-like arch) whose line integrals
are exact chord lengths: a fast pair with known ground truth for the service tests and benchmarks.
The realistic head is the procedural phantom of model/skull.py (`psct simulate`, `psct demo`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.geometry import ViewGeometry

# Linear attenuation of water at the ~70 keV effective energy of an 80 kVp skull beam
# (NIST XCOM, water, 70 keV: mu/rho = 0.1929 cm^2/g).
MU_WATER_PER_MM = 0.01929
# Tissue HU levels (typical CT values).
SOFT_HU, BONE_HU, BRAIN_HU, CSF_HU, AIR_HU = 40.0, 1400.0, 30.0, 8.0, -1000.0
# Head length / breadth / height in mm at birth and at 18 y (WHO/Nellhaus order of magnitude:
# length ~ 120 -> 190 mm, breadth ~ 95 -> 150 mm); growth is fastest early, so sqrt of age.
HEAD_MM_NEWBORN = np.array([95.0, 120.0, 100.0])  # x (breadth), y (length), z (height)
HEAD_MM_ADULT = np.array([150.0, 190.0, 160.0])
SCALP_MM = 5.0
CALVARIUM_MM_NEWBORN, CALVARIUM_MM_ADULT = 2.0, 6.0


@dataclass(frozen=True, slots=True)
class Ellipsoid:
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    delta_mu_per_mm: float  # added to everything inside (Shepp-Logan convention)


def mu_of_hu(hu: float) -> float:
    return MU_WATER_PER_MM * (1.0 + hu / 1000.0)


def head(age_y: float, seed: int) -> list[Ellipsoid]:
    """A seeded ellipsoid head of age `age_y`, its cranium centred near the isocentre."""
    rng = np.random.default_rng(seed)
    growth = np.sqrt(np.clip(age_y, 0.0, 18.0) / 18.0)
    size = (HEAD_MM_NEWBORN + growth * (HEAD_MM_ADULT - HEAD_MM_NEWBORN)) * rng.uniform(0.94, 1.06, 3)
    shift = rng.uniform(-6.0, 6.0, 3)
    calvarium_mm = CALVARIUM_MM_NEWBORN + growth * (CALVARIUM_MM_ADULT - CALVARIUM_MM_NEWBORN)
    outer = size / 2.0
    skull = outer - SCALP_MM
    brain = skull - calvarium_mm
    soft, bone, brain_mu = mu_of_hu(SOFT_HU), mu_of_hu(BONE_HU), mu_of_hu(BRAIN_HU)
    # Lower face and mandible: a soft-tissue-clad bone arch below the cranium, placed so that it does
    # not overlap the head ellipsoid (additive ellipsoids would count tissue twice where they do).
    jaw_c = shift + np.array([0.0, -0.5 * outer[1], -1.2 * outer[2]])
    jaw_r = np.array([0.7 * outer[0], 0.45 * outer[1], 0.22 * outer[2]])
    parts = [
        (shift, outer, soft - mu_of_hu(AIR_HU)),
        (shift, skull, bone - soft),
        (shift, brain, brain_mu - bone),
        (
            shift + [-0.12 * brain[0], 0.05 * brain[1], 0.1 * brain[2]],
            brain * [0.08, 0.35, 0.2],
            mu_of_hu(CSF_HU) - brain_mu,
        ),
        (
            shift + [0.12 * brain[0], 0.05 * brain[1], 0.1 * brain[2]],
            brain * [0.08, 0.35, 0.2],
            mu_of_hu(CSF_HU) - brain_mu,
        ),
        (jaw_c, jaw_r, soft - mu_of_hu(AIR_HU)),
        (jaw_c, jaw_r - SCALP_MM, bone - soft),
        (jaw_c, jaw_r - SCALP_MM - 2.0 * calvarium_mm, soft - bone),
    ]
    return [Ellipsoid(tuple(c), tuple(r), float(d)) for c, r, d in parts]  # type: ignore[arg-type]


def _chords(origin: np.ndarray, direction: np.ndarray, e: Ellipsoid) -> np.ndarray:
    """Chord length (mm) of unit-direction rays through one axis-aligned ellipsoid."""
    a = np.asarray(e.semi_axes_mm)
    p = (origin - np.asarray(e.centre_mm)) / a
    q = direction / a
    qq = np.sum(q * q, axis=-1)
    pq = np.sum(p * q, axis=-1)
    disc = pq**2 - qq * (np.sum(p * p, axis=-1) - 1.0)
    return np.where(disc > 0.0, 2.0 * np.sqrt(np.clip(disc, 0.0, None)) / qq, 0.0)


def line_integrals(parts: list[Ellipsoid], g: ViewGeometry) -> np.ndarray:
    """Exact integral of mu along every source-to-pixel ray, (rows, columns), dimensionless."""
    rows, cols = g.shape_px
    b, source = g.beam_direction, g.source_mm
    e_u, e_v = np.asarray(g.row_direction), np.asarray(g.column_direction)
    u = (np.arange(cols) - (cols - 1) / 2.0) * g.pitch_mm[1]
    v = (np.arange(rows) - (rows - 1) / 2.0) * g.pitch_mm[0]
    pixels = source + g.sid_mm * b + v[:, None, None] * e_v + u[None, :, None] * e_u
    direction = pixels - source
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    return sum((e.delta_mu_per_mm * _chords(source, direction, e) for e in parts), np.zeros((rows, cols)))


def rasterise_hu(parts: list[Ellipsoid], x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray) -> np.ndarray:
    """Ground-truth HU volume (z, y, x) on the given axes."""
    z, y, x = np.meshgrid(z_mm, y_mm, x_mm, indexing="ij")
    mu = np.zeros(z.shape)
    for e in parts:
        (cx, cy, cz), (ax, ay, az) = e.centre_mm, e.semi_axes_mm
        inside = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1.0
        mu += e.delta_mu_per_mm * inside
    return 1000.0 * (mu - MU_WATER_PER_MM) / MU_WATER_PER_MM
