"""HU volume -> a realistic PA + lateral DX pair: geometry, polychromatic physics, vendor look.

Mass line integrals are rendered (model/drr.py) on a detector grid of about 1 mm, which the
volume's 1-1.5 mm voxels cannot out-resolve, then interpolated to the panel's real pitch, where
quantum noise, blur and the vendor processing are applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydicom.dataset import Dataset
from scipy import ndimage

from model.acquisition import ViewSetup, random_pair
from model.ct_volume import prepare_ct
from model.drr import line_integrals
from model.dx_writer import Study, radiograph_dataset, study_for_seed
from model.geometry import GeometryTags, ViewGeometry, projection_matrix, rescale_projection, resolve_view
from model.grid import OUTPUT_SHAPE, VOXEL_MM, axis_mm
from model.skull import Phantom, parameters, phantom, rotation_matrix
from model.vendor import present
from model.xray import basis_densities, expose, primary_signal

# Detector sampling of the rendered line integrals (then interpolated to the real pitch).
RENDER_PITCH_MM = 1.0
ANTIALIAS_VOXELS = 1.0  # Gaussian sigma (voxels) on the densities before projection (see densities)


@dataclass(frozen=True)
class SimulatedView:
    dataset: Dataset
    setup: ViewSetup
    geometry: ViewGeometry  # what the DICOM says (nominal)


def nominal_geometry(setup: ViewSetup) -> ViewGeometry:
    return resolve_view(
        GeometryTags(
            view=setup.view, rows=setup.shape_px[0], columns=setup.shape_px[1], sid_mm=setup.sid_mm,
            magnification=setup.sid_mm / setup.sod_mm, imager_pitch_mm=(setup.pitch_mm, setup.pitch_mm),
        )
    )  # fmt: skip


def _posed(matrix: np.ndarray, pose_deg: tuple[float, float, float]) -> np.ndarray:
    """The matrix seen by a head rotated by `pose_deg` about the isocentre."""
    rotation = np.eye(4)
    rotation[:3, :3] = rotation_matrix(pose_deg)
    return matrix @ rotation


def render_shape(shape_px: tuple[int, int], pitch_mm: float) -> tuple[int, int]:
    """The ~RENDER_PITCH_MM detector grid the physics runs on."""
    factor = max(1, math.floor(RENDER_PITCH_MM / pitch_mm))
    return (max(2, math.ceil(shape_px[0] / factor)), max(2, math.ceil(shape_px[1] / factor)))


def binned(setup: ViewSetup) -> ViewSetup:
    """The same exposure read out on the ~RENDER_PITCH_MM grid: the panel's pixels binned, so
    photons (quantum noise) add up and read-out noise adds in quadrature. Training data use it."""
    factor = max(1, math.floor(RENDER_PITCH_MM / setup.pitch_mm))
    pitch_mm = setup.pitch_mm * factor
    detector = replace(setup.detector, pitch_mm=pitch_mm,
                       electronic_noise_photons=setup.detector.electronic_noise_photons * factor)  # fmt: skip
    return replace(setup, pitch_mm=pitch_mm, shape_px=render_shape(setup.shape_px, setup.pitch_mm), detector=detector)


def mass_integrals(
    soft: torch.Tensor,
    bone: torch.Tensor,
    voxel_mm: float,
    matrix: np.ndarray,
    shape_px: tuple[int, int],
    bulk: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(soft, bone) mass line integrals in g/cm^2 on the detector grid `shape_px` of `matrix`.

    `bulk`: RTK's Joseph projector (~20x faster, agrees to r > 0.99999 in tests), for training data.
    """
    if bulk:
        from model.rtk_projector import joseph_line_integrals

        return tuple(joseph_line_integrals(v.numpy(), voxel_mm, matrix, shape_px) / 10.0 for v in (soft, bone))  # type: ignore[return-value]
    d, h, w = soft.shape
    axes = [torch.tensor(axis_mm(n, voxel_mm), dtype=torch.float32) for n in (w, h, d)]
    matrix_t = torch.tensor(matrix, dtype=torch.float32)
    with torch.no_grad():  # mm * g/cm^3 -> g/cm^2
        return tuple(line_integrals(v, matrix_t, *axes, shape_px).double().numpy() / 10.0 for v in (soft, bone))  # type: ignore[return-value]


def upsample(image: np.ndarray, shape_px: tuple[int, int]) -> np.ndarray:
    """Bilinear, pixel-edge aligned (the mapping of rescale_projection)."""
    fine = F.interpolate(torch.from_numpy(image)[None, None], size=shape_px, mode="bilinear", align_corners=False)
    return fine[0, 0].numpy()


def densities(hu: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(soft, bone) densities of a HU volume, band-limited before projection.

    A voxelised shell seen face-on shows its voxel terraces as concentric contour rings; a real
    skull has none. A Gaussian of ANTIALIAS_VOXELS (the partial-volume blur of a CT at this voxel
    size) removes them while keeping every structure thicker than a voxel.
    """
    return tuple(torch.from_numpy(ndimage.gaussian_filter(v.astype(np.float32), ANTIALIAS_VOXELS))
                 for v in basis_densities(hu))  # type: ignore[return-value]  # fmt: skip


def simulate_view(
    soft: torch.Tensor,
    bone: torch.Tensor,
    voxel_mm: float,
    setup: ViewSetup,
    study: Study,
    instance: int,
    rng: np.random.Generator,
    omit: frozenset[str] = frozenset(),
    bulk: bool = False,
) -> SimulatedView:
    """One view; `bulk`: binned to ~1 mm pixels and projected by RTK, the fast path for training."""
    if bulk:
        setup = binned(setup)
    geometry = nominal_geometry(setup)
    coarse = render_shape(setup.shape_px, setup.pitch_mm)
    matrix = rescale_projection(_posed(projection_matrix(geometry), setup.pose_deg), setup.shape_px, coarse)
    soft_g, bone_g = mass_integrals(soft, bone, voxel_mm, matrix, coarse, bulk)
    # Photons per panel pixel, on the coarse grid: smooth at that scale, so interpolating is exact enough.
    primary = primary_signal(soft_g, bone_g, setup.beam, setup.detector, setup.sid_mm)
    primary = replace(primary, mean_kev=upsample(primary.mean_kev, setup.shape_px),
                      variance_kev2=upsample(primary.variance_kev2, setup.shape_px))  # fmt: skip
    raw, flat = expose(primary, setup.detector, setup.acquisition, rng)
    pixels = present(raw, flat, setup.pitch_mm, setup.look)
    look = setup.look
    dataset = radiograph_dataset(
        pixels, geometry, study, instance, look.monochrome1, look.bits, omit, look.storage, look.relationship
    )
    dataset.KVP = f"{setup.beam.kvp:.0f}"
    dataset.Exposure = f"{setup.beam.mas:.0f}"
    return SimulatedView(dataset, setup, geometry)


def simulate_radiographs(
    hu: np.ndarray,
    voxel_mm: float,
    study: Study,
    seed: int,
    kvp: float | None = None,
    omit: frozenset[str] = frozenset(),
    storage: str | None = None,
    bulk: bool = False,
    setups: tuple[ViewSetup, ViewSetup] | None = None,
) -> tuple[SimulatedView, SimulatedView]:
    """A PA + lateral pair of the HU volume (z, y, x; LPS, centred on the isocentre).

    `storage` (DX, CR, DX-processing) fixes the object type; by default it is randomised.
    `setups` replaces the randomised rooms (evaluation varies them on purpose).
    """
    rng = np.random.default_rng(seed)
    pa_setup, lateral_setup = random_pair(rng, kvp, storage)
    if setups is not None:
        pa_setup, lateral_setup = setups
    soft, bone = densities(hu)
    pa = simulate_view(soft, bone, voxel_mm, pa_setup, study, 1, rng, omit, bulk)
    lateral = simulate_view(soft, bone, voxel_mm, lateral_setup, study, 2, rng, omit, bulk)
    return pa, lateral


@dataclass(frozen=True)
class HeadPair:
    pa: SimulatedView
    lateral: SimulatedView
    head: Phantom  # the ground truth, on the serving grid


def simulate_ct(
    path: Path, seed: int, kvp: float | None = None, omit: frozenset[str] = frozenset(), storage: str | None = None
) -> HeadPair:
    """A real CT (DICOM folder or NIfTI), table removed, on the serving grid, and its radiograph pair."""
    hu = prepare_ct(path, OUTPUT_SHAPE, VOXEL_MM)
    labels = np.zeros(hu.shape, dtype=np.uint8)  # a real CT has no label map
    pa, lateral = simulate_radiographs(hu, VOXEL_MM, study_for_seed(seed), seed, kvp, omit, storage)
    return HeadPair(pa, lateral, Phantom(hu=hu, labels=labels, voxel_mm=VOXEL_MM, params=None))  # type: ignore[arg-type]


def simulate_head(
    age_y: float,
    condition: str,
    seed: int,
    kvp: float | None = None,
    omit: frozenset[str] = frozenset(),
    storage: str | None = None,
) -> HeadPair:
    """A procedural head (model/skull.py) on the serving grid and its radiograph pair."""
    head = phantom(parameters(age_y, condition, seed), OUTPUT_SHAPE, VOXEL_MM)
    study = replace(study_for_seed(seed), patient_sex=head.params.sex)
    pa, lateral = simulate_radiographs(head.hu, VOXEL_MM, study, seed, kvp, omit, storage)
    return HeadPair(pa, lateral, head)
