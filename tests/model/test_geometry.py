"""Geometry rules of the contract, and the projection matrix checked against ray geometry."""

from __future__ import annotations

import numpy as np
import pytest

from model.geometry import (
    DEFAULT_ISOCENTRE_TO_DETECTOR_MM,
    DEFAULT_PITCH_MM,
    DEFAULT_SID_MM,
    GeometryError,
    GeometryTags,
    RoomDefaults,
    projection_matrix,
    rescale_projection,
    resolve_view,
)


def project(matrix: np.ndarray, point_mm) -> np.ndarray:  # type: ignore[no-untyped-def]
    u, v, w = matrix @ np.append(np.asarray(point_mm, dtype=float), 1.0)
    return np.array([u / w, v / w])


def tags(**values) -> GeometryTags:  # type: ignore[no-untyped-def]
    base = dict(view="PA", rows=300, columns=200, sid_mm=1000.0, magnification=1.25, imager_pitch_mm=(0.2, 0.1))
    return GeometryTags(**{**base, **values})


def test_isocentre_projects_to_the_image_centre() -> None:
    g = resolve_view(tags())
    np.testing.assert_allclose(project(projection_matrix(g), [0, 0, 0]), [99.5, 149.5], atol=1e-9)


@pytest.mark.parametrize(
    ("view", "step", "expected_du_dv"),
    [
        # PA with default L\F: patient left goes right in the image (+u), feet go down (+v).
        ("PA", [10, 0, 0], (+1, 0)),
        ("PA", [0, 0, -10], (0, +1)),
        # LL with default P\F: posterior goes right.
        ("LL", [0, 10, 0], (+1, 0)),
        # RL with default A\F: anterior goes right.
        ("RL", [0, -10, 0], (+1, 0)),
        ("AP", [10, 0, 0], (+1, 0)),
    ],
)
def test_default_orientations_follow_the_contract(view: str, step, expected_du_dv) -> None:  # type: ignore[no-untyped-def]
    g = resolve_view(tags(view=view, imager_pitch_mm=(0.1, 0.1)))
    delta = project(projection_matrix(g), step) - project(projection_matrix(g), [0, 0, 0])
    assert np.sign(np.round(delta, 6)).tolist() == list(expected_du_dv)
    assert any("PatientOrientation absent" in n for n in g.notes)


def test_magnification_scales_isocentre_plane_by_sid_over_sod() -> None:
    g = resolve_view(tags(imager_pitch_mm=(0.1, 0.1), magnification=1.25))
    assert g.sod_mm == pytest.approx(800.0)
    du = project(projection_matrix(g), [10, 0, 0])[0] - project(projection_matrix(g), [0, 0, 0])[0]
    # 10 mm at the isocentre -> 12.5 mm on the detector -> 125 pixels of 0.1 mm.
    assert du == pytest.approx(125.0, rel=1e-12)


def test_matrix_matches_explicit_ray_intersection() -> None:
    """Independent check: intersect the source->point ray with the detector plane by hand."""
    g = resolve_view(tags(view="LL", patient_orientation=("A", "H"), imager_pitch_mm=(0.15, 0.12)))
    rng = np.random.default_rng(3)
    source = g.source_mm
    beam = g.beam_direction
    centre = source + g.sid_mm * beam
    e_u, e_v = np.asarray(g.row_direction), np.asarray(g.column_direction)
    for point in rng.uniform(-100, 100, (20, 3)):
        t = g.sid_mm / np.dot(point - source, beam)
        hit = source + t * (point - source)
        expected = [
            np.dot(hit - centre, e_u) / g.pitch_mm[1] + (g.shape_px[1] - 1) / 2,
            np.dot(hit - centre, e_v) / g.pitch_mm[0] + (g.shape_px[0] - 1) / 2,
        ]
        np.testing.assert_allclose(project(projection_matrix(g), point), expected, rtol=0, atol=1e-9)


def test_missing_tags_take_documented_defaults_and_say_so() -> None:
    g = resolve_view(GeometryTags(view="PA", rows=100, columns=100))
    assert g.sid_mm == DEFAULT_SID_MM
    assert g.sod_mm == DEFAULT_SID_MM - DEFAULT_ISOCENTRE_TO_DETECTOR_MM
    assert g.pitch_mm == (DEFAULT_PITCH_MM, DEFAULT_PITCH_MM)
    assert len(g.notes) == 4  # SID, isocentre, pitch, orientation


def test_a_site_room_fills_missing_distances_and_tags_still_win() -> None:
    room = RoomDefaults(sid_mm=1500.0, isocentre_to_detector_mm=120.0)
    g = resolve_view(GeometryTags(view="LL", rows=100, columns=100), room)
    assert (g.sid_mm, g.sod_mm) == (1500.0, 1380.0)
    assert any("default 1500 mm" in n for n in g.notes) and any("120 mm in front" in n for n in g.notes)
    assert resolve_view(tags(), room).sod_mm == 800.0  # SID 1000 mm / magnification 1.25 from the tags


@pytest.mark.parametrize(
    ("sid_mm", "isocentre_mm", "named"),
    [(200.0, 100.0, "default SID"), (float("nan"), 140.0, "default SID"),
     (1000.0, 30.0, "isocentre-to-detector"), (1000.0, 980.0, "isocentre-to-detector")],
)  # fmt: skip
def test_an_impossible_room_is_refused_naming_the_distance(sid_mm: float, isocentre_mm: float, named: str) -> None:
    with pytest.raises(GeometryError, match=named):
        RoomDefaults(sid_mm, isocentre_mm)


def test_distance_source_to_patient_is_recorded_as_an_approximation() -> None:
    g = resolve_view(tags(magnification=None, source_to_patient_mm=900.0))
    assert g.sod_mm == 900.0
    assert any("approximated by DistanceSourceToPatient" in n for n in g.notes)


def test_geometry_calibrated_pixel_spacing_is_scaled_to_the_detector() -> None:
    g = resolve_view(tags(imager_pitch_mm=None, pixel_spacing_mm=(0.1, 0.1), pixel_spacing_calibration="GEOMETRY"))
    assert g.pitch_mm == pytest.approx((0.125, 0.125))


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"sid_mm": 0.0}, "DistanceSourceToDetector"),
        ({"sid_mm": -1000.0}, "DistanceSourceToDetector"),
        ({"imager_pitch_mm": (0.0, 0.1)}, "ImagerPixelSpacing"),
        ({"imager_pitch_mm": None, "pixel_spacing_mm": (-0.1, 0.1)}, "PixelSpacing"),
        ({"magnification": 0.5}, "EstimatedRadiographicMagnificationFactor"),
        ({"magnification": None, "source_to_patient_mm": 0.0}, "DistanceSourceToPatient"),
        ({"magnification": None, "source_to_patient_mm": 1200.0}, "DistanceSourceToPatient"),
        ({"patient_orientation": ("P", "F")}, "PatientOrientation"),  # P runs along a PA beam
        ({"patient_orientation": ("X", "F")}, "PatientOrientation"),
    ],
)
def test_nonsense_is_refused_naming_the_attribute(values, names) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GeometryError, match=names):
        resolve_view(tags(**values))


def test_rescaled_matrix_maps_pixel_edges_to_pixel_edges() -> None:
    g = resolve_view(tags(imager_pitch_mm=(0.1, 0.1)))
    matrix = projection_matrix(g)
    scaled = rescale_projection(matrix, (300, 200), (30, 20))
    point = [12.0, 0.0, -7.0]
    u, v = project(matrix, point)
    np.testing.assert_allclose(project(scaled, point), [(u + 0.5) / 10 - 0.5, (v + 0.5) / 10 - 0.5], atol=1e-9)
