"""The back-projector and its matched forward projector, tested as numerics.

Tolerances: in float64 the two sides of the dot-product test sum the same ~1e5 products in a
different order, so they agree to ~1e-15 relative; 1e-10 leaves room and still fails on any
mismatch of weights or indices (those give errors of order 1e-2).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.geometry import GeometryTags, projection_matrix, resolve_view
from model.grid import axis_mm
from model.projector import back_project, forward_project

ADJOINT_RTOL = 1e-10
DETECTOR = (48, 40)
VOXELS = 20
VOXEL_MM = 4.0  # 80 mm field on a coarse grid keeps the test fast


def matrix_for(view: str, orientation=None) -> torch.Tensor:  # type: ignore[no-untyped-def]
    g = resolve_view(
        GeometryTags(
            view=view,
            rows=DETECTOR[0],
            columns=DETECTOR[1],
            sid_mm=1000.0,
            magnification=1.2,
            imager_pitch_mm=(2.0, 2.0),
            patient_orientation=orientation,
        )
    )
    return torch.tensor(projection_matrix(g), dtype=torch.float64)[None]


def axes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a = torch.tensor(axis_mm(VOXELS, VOXEL_MM), dtype=torch.float64)
    return a, a + 3.0, a - 5.0  # not symmetric, so a swapped axis would show


GEOMETRIES = {
    "pa": lambda: matrix_for("PA"),
    "lateral": lambda: matrix_for("LL"),
    "rl-oblique-labels": lambda: matrix_for("RL", ("AH", "PH")),  # detector rows at 45 degrees
}


@pytest.mark.parametrize("view", sorted(GEOMETRIES))
@pytest.mark.parametrize("channels", [1, 4])
def test_back_projection_is_the_adjoint(view: str, channels: int) -> None:
    matrix = GEOMETRIES[view]()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, channels, VOXELS, VOXELS, VOXELS, generator=gen, dtype=torch.float64)
    y = torch.rand(1, channels, *DETECTOR, generator=gen, dtype=torch.float64)
    lhs = torch.sum(forward_project(x, matrix, *axes(), DETECTOR) * y)
    rhs = torch.sum(x * back_project(y, matrix, *axes()))
    torch.testing.assert_close(lhs, rhs, rtol=ADJOINT_RTOL, atol=0.0)
    assert lhs > 0  # rays actually hit the volume


def numpy_back_projection(image: np.ndarray, matrix: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray):  # type: ignore[no-untyped-def]
    """Independent reference: per-voxel projection and bilinear interpolation written out in numpy."""
    h, w = image.shape
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    points = np.stack([xx, yy, zz, np.ones_like(xx)], axis=-1)
    p = points @ matrix.T
    u, v = p[..., 0] / p[..., 2], p[..., 1] / p[..., 2]
    out = np.zeros(u.shape)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    for du in (0, 1):
        for dv in (0, 1):
            uu, vv = u0 + du, v0 + dv
            weight = (1 - np.abs(u - uu)) * (1 - np.abs(v - vv))
            ok = (uu >= 0) & (uu < w) & (vv >= 0) & (vv < h)
            out[ok] += weight[ok] * image[vv[ok], uu[ok]]
    return out


@pytest.mark.parametrize("view", sorted(GEOMETRIES))
def test_back_projection_agrees_with_an_independent_numpy_implementation(view: str) -> None:
    matrix = GEOMETRIES[view]()
    image = torch.rand(1, 1, *DETECTOR, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = back_project(image, matrix, *axes())[0, 0].numpy()
    expected = numpy_back_projection(image[0, 0].numpy(), matrix[0].numpy(), *(a.numpy() for a in axes()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.count_nonzero(expected) > 0.5 * expected.size


def test_a_line_image_back_projects_onto_the_plane_through_the_source() -> None:
    """A single detector column lights up exactly the voxels whose projection falls on it."""
    matrix = matrix_for("PA")
    image = torch.zeros(1, 1, *DETECTOR, dtype=torch.float64)
    centre_column = (DETECTOR[1] - 1) // 2
    image[..., centre_column] = 1.0
    volume = back_project(image, matrix, *axes())[0, 0]
    x, y, z = axes()
    u = (matrix[0, 0, 0] * x[None, :] + matrix[0, 0, 1] * y[:, None] + matrix[0, 0, 3]) / (
        matrix[0, 2, 1] * y[:, None] + matrix[0, 2, 3]
    )
    expected = torch.clamp(1 - torch.abs(u - centre_column), min=0)  # (y, x), the same for every z
    central = torch.abs(z) <= 25.0  # slices whose every voxel projects inside the detector rows
    torch.testing.assert_close(volume[central], expected.expand_as(volume)[central], rtol=0, atol=1e-12)
    assert volume.sum() > 0


def test_back_projection_agrees_with_rtk() -> None:
    """Independent implementation: RTK's BackProjectionImageFilter (bilinear, voxel-driven) summed
    over views. Both work in float32; differences are rounding (~1e-6 relative)."""
    from tests.rtk_reference import back_projection, circular

    # The volume projects well inside the detector: RTK and we treat the last half pixel differently.
    setup = circular(860.0, 1000.0, [0.0, 90.0, 4.0], detector_px=96, pitch_mm=3.0, volume_px=48, voxel_mm=3.0)
    projections = np.random.default_rng(4).random((3, 96, 96), dtype=np.float32)
    reference = back_projection(setup, projections)
    a = torch.tensor(setup.axis_mm, dtype=torch.float32)
    ours = (
        back_project(
            torch.from_numpy(projections[:, None]), torch.tensor(setup.matrices(), dtype=torch.float32), a, a, a
        )
        .sum(dim=0)[0]
        .numpy()
    )
    rel_rms = np.sqrt(np.mean((ours - reference) ** 2)) / np.sqrt(np.mean(reference**2))
    assert rel_rms < 1e-5 and reference.mean() > 0.5
