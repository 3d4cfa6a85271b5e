"""Cone-beam geometry of one radiograph, in the contract's frame (DICOM LPS, mm, isocentre at 0).

Pure functions and frozen dataclasses: values in, arrays out. Reading them from DICOM lives in
`model/radiograph.py`; the rules (which tag wins, which default applies) are in `resolve_view`.

Projection model: the source sits at distance `sod_mm` from the isocentre on the beam axis, the
flat detector is perpendicular to the beam at `sid_mm` from the source, and the central ray meets
the detector at the image centre (CONTRACT.md "Geometry comes from the instances").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from model.errors import ModelInputError

# LPS unit vectors for DICOM patient direction letters (PS3.3 C.7.6.1.1.1).
DIRECTION_LPS: dict[str, tuple[float, float, float]] = {
    "L": (1.0, 0.0, 0.0),
    "R": (-1.0, 0.0, 0.0),
    "P": (0.0, 1.0, 0.0),
    "A": (0.0, -1.0, 0.0),
    "H": (0.0, 0.0, 1.0),
    "F": (0.0, 0.0, -1.0),
}

# Beam direction (source -> detector) per view, CONTRACT.md "Patient frame of the output".
BEAM_DIRECTION_LPS: dict[str, tuple[float, float, float]] = {
    "PA": (0.0, -1.0, 0.0),  # source posterior, beam towards anterior
    "AP": (0.0, 1.0, 0.0),
    "LL": (1.0, 0.0, 0.0),  # left side on the detector
    "RL": (-1.0, 0.0, 0.0),
}

# Default PatientOrientation (rows, columns) when the tag is absent (CONTRACT.md).
DEFAULT_ORIENTATION: dict[str, tuple[str, str]] = {
    "PA": ("L", "F"),
    "AP": ("L", "F"),
    "LL": ("P", "F"),
    "RL": ("A", "F"),
}

# Documented defaults for missing tags (README "Geometry defaults").
# Skull radiography is done at 100 cm SID (Bontrager & Lampignano, Textbook of Radiographic
# Positioning, cranium chapter: 40 in / 100 cm).
DEFAULT_SID_MM = 1000.0
# Isocentre (middle of the head) to receptor: half a head breadth (~70-80 mm for a child) plus the
# table/bucky-to-receptor gap (~50-70 mm in wall and table buckys).
DEFAULT_ISOCENTRE_TO_DETECTOR_MM = 140.0
# Middle of the 0.1-0.2 mm pitch range of current flat panels and CR plates.
DEFAULT_PITCH_MM = 0.15
# A lateral with no side given is taken as left lateral, the standard lateral skull and
# cephalometric projection (left side to the receptor).
DEFAULT_LATERAL = "LL"

# Plausibility limits: outside them a value is nonsense, not a different X-ray room.
SID_RANGE_MM = (300.0, 3000.0)  # mobile units ~ 60 cm, long cephalostats ~ 180 cm
PITCH_RANGE_MM = (0.02, 2.0)  # 20 um mammography panels .. heavily binned read-outs
MAGNIFICATION_RANGE = (1.0, 3.0)  # exclusive lower bound: the object is in front of the receptor
MIN_ISOCENTRE_TO_DETECTOR_MM = 40.0  # half the breadth of a newborn head


class GeometryError(ModelInputError):
    """Unusable geometry; the message names the DICOM attribute and its value."""


@dataclass(frozen=True, slots=True)
class GeometryTags:
    """The geometry-relevant attributes of one radiograph, None where absent."""

    view: str  # PA, AP, LL, RL
    rows: int  # (0028,0010)
    columns: int  # (0028,0011)
    sid_mm: float | None = None  # (0018,1110) DistanceSourceToDetector
    source_to_patient_mm: float | None = None  # (0018,1111) DistanceSourceToPatient
    magnification: float | None = None  # (0018,1114) EstimatedRadiographicMagnificationFactor
    imager_pitch_mm: tuple[float, float] | None = None  # (0018,1164) ImagerPixelSpacing row\col
    pixel_spacing_mm: tuple[float, float] | None = None  # (0028,0030) PixelSpacing row\col
    pixel_spacing_calibration: str | None = None  # (0028,0A02) PixelSpacingCalibrationType
    patient_orientation: tuple[str, str] | None = None  # (0020,0020) rows\columns


@dataclass(frozen=True, slots=True)
class ViewGeometry:
    """One radiograph's cone-beam geometry in the isocentre LPS frame (mm)."""

    view: str
    sid_mm: float
    sod_mm: float  # source to isocentre
    pitch_mm: tuple[float, float]  # detector pitch (row spacing, column spacing)
    shape_px: tuple[int, int]  # rows, columns
    row_direction: tuple[float, float, float]  # LPS direction of increasing column index
    column_direction: tuple[float, float, float]  # LPS direction of increasing row index
    notes: tuple[str, ...] = field(default=())  # defaults and approximations used

    def __post_init__(self) -> None:
        if self.view not in BEAM_DIRECTION_LPS:
            raise GeometryError(f"view must be one of {sorted(BEAM_DIRECTION_LPS)}, got {self.view!r}")
        if not 0.0 < self.sod_mm < self.sid_mm:
            raise GeometryError(
                f"need 0 < source-to-isocentre < source-to-detector, got sod_mm={self.sod_mm:g}, sid_mm={self.sid_mm:g}"
            )
        if min(self.pitch_mm) <= 0.0 or min(self.shape_px) < 2:
            raise GeometryError(f"need positive pitch and >= 2 pixels, got {self.pitch_mm}, {self.shape_px}")

    @property
    def beam_direction(self) -> np.ndarray:
        return np.asarray(BEAM_DIRECTION_LPS[self.view], dtype=np.float64)

    @property
    def source_mm(self) -> np.ndarray:
        return -self.sod_mm * self.beam_direction

    @property
    def magnification(self) -> float:
        return self.sid_mm / self.sod_mm


def projection_matrix(g: ViewGeometry) -> np.ndarray:
    """3x4 matrix P with [u*w, v*w, w] = P @ [x, y, z, 1] (LPS mm -> detector column u, row v).

    Pixel indices are 0-based pixel centres. w is the depth of the point along the beam, measured
    from the source, so w > 0 for every point between source and detector.
    """
    b = g.beam_direction
    e_u = np.asarray(g.row_direction, dtype=np.float64)
    e_v = np.asarray(g.column_direction, dtype=np.float64)
    rows, cols = g.shape_px
    pitch_row_mm, pitch_col_mm = g.pitch_mm
    cu, cv = (cols - 1) / 2.0, (rows - 1) / 2.0
    # Central projection onto the plane at sid_mm: u = sid * (X'.e_u) / (X'.b) / pitch + cu, X' = X - s.
    intrinsic = np.stack([g.sid_mm / pitch_col_mm * e_u + cu * b, g.sid_mm / pitch_row_mm * e_v + cv * b, b])
    extrinsic = np.concatenate([np.eye(3), -g.source_mm[:, None]], axis=1)
    return intrinsic @ extrinsic


def rescale_projection(matrix: np.ndarray, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """The projection matrix for the same detector resampled from `from_shape` to `to_shape` pixels.

    Pixel centres map as u' = (u + 0.5) * W'/W - 0.5, the convention of area (box) resampling.
    """
    sy, sx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
    scale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return scale @ matrix


def _joined(values: tuple[str, str]) -> str:
    return "\\".join(values)


def _direction(code: str, attribute: str) -> np.ndarray:
    letters = code.strip().upper()
    if not letters or any(c not in DIRECTION_LPS for c in letters):
        raise GeometryError(f"{attribute} value {code!r} is not a DICOM patient direction (letters LRAPHF)")
    v = np.sum([DIRECTION_LPS[c] for c in letters], axis=0)
    return v / np.linalg.norm(v)


def _check_range(name: str, value: float, low: float, high: float, unit: str) -> float:
    if not math.isfinite(value) or not low <= value <= high:
        raise GeometryError(f"{name} is {value:g}{unit}: must be between {low:g} and {high:g}{unit}")
    return float(value)


def _detector_axes(view: str, orientation: tuple[str, str]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    attribute = "PatientOrientation (0020,0020)"
    beam = np.asarray(BEAM_DIRECTION_LPS[view])
    axes = []
    for code in orientation:
        d = _direction(code, attribute)
        d = d - np.dot(d, beam) * beam  # oblique labels: keep the in-plane part
        if np.linalg.norm(d) < 0.5:
            raise GeometryError(f"{attribute} {_joined(orientation)!r} runs along the beam of a {view} view")
        axes.append(d / np.linalg.norm(d))
    if abs(float(np.dot(axes[0], axes[1]))) > 0.5:
        raise GeometryError(f"{attribute} {_joined(orientation)!r}: rows and columns are not perpendicular")
    return tuple(axes[0].tolist()), tuple(axes[1].tolist())


@dataclass(frozen=True, slots=True)
class RoomDefaults:
    """The distances assumed where an instance gives none: the documented defaults, or a site's own room
    (PSCT_DEFAULT_SID_MM, PSCT_DEFAULT_ISOCENTRE_TO_DETECTOR_MM) whose radiographs omit them (e.g. CR)."""

    sid_mm: float = DEFAULT_SID_MM
    isocentre_to_detector_mm: float = DEFAULT_ISOCENTRE_TO_DETECTOR_MM

    def __post_init__(self) -> None:
        _check_range("default SID", self.sid_mm, *SID_RANGE_MM, " mm")
        # Room for at least a newborn's half head breadth on either side of the isocentre.
        _check_range("default isocentre-to-detector distance", self.isocentre_to_detector_mm,
                     MIN_ISOCENTRE_TO_DETECTOR_MM, self.sid_mm - MIN_ISOCENTRE_TO_DETECTOR_MM, " mm")  # fmt: skip


STANDARD_ROOM = RoomDefaults()


def resolve_view(tags: GeometryTags, room: RoomDefaults = STANDARD_ROOM) -> ViewGeometry:
    """Apply the contract's rules to the tags, `room` filling missing distances; every default or
    approximation is noted."""
    notes: list[str] = []
    view = tags.view
    if tags.rows < 2 or tags.columns < 2:
        raise GeometryError(f"Rows x Columns is {tags.rows} x {tags.columns}: an image needs at least 2 x 2")

    if tags.sid_mm is None:
        sid_mm = room.sid_mm
        notes.append(f"{view}: DistanceSourceToDetector absent, default {sid_mm:g} mm")
    else:
        sid_mm = _check_range("DistanceSourceToDetector (0018,1110)", tags.sid_mm, *SID_RANGE_MM, " mm")

    if tags.magnification is not None:
        factor = tags.magnification
        if not math.isfinite(factor) or not MAGNIFICATION_RANGE[0] < factor <= MAGNIFICATION_RANGE[1]:
            raise GeometryError(
                f"EstimatedRadiographicMagnificationFactor (0018,1114) is {factor:g}: must be above "
                f"{MAGNIFICATION_RANGE[0]:g} and at most {MAGNIFICATION_RANGE[1]:g}"
            )
        sod_mm = sid_mm / factor
    elif tags.source_to_patient_mm is not None:
        sod_mm = _check_range("DistanceSourceToPatient (0018,1111)", tags.source_to_patient_mm, 1.0, sid_mm, " mm")
        notes.append(
            f"{view}: source-to-isocentre approximated by DistanceSourceToPatient {sod_mm:g} mm "
            "(defined to the patient's near side, not the head centre)"
        )
    else:
        sod_mm = sid_mm - room.isocentre_to_detector_mm
        notes.append(
            f"{view}: no magnification or DistanceSourceToPatient, isocentre assumed "
            f"{room.isocentre_to_detector_mm:g} mm in front of the detector"
        )
    if sid_mm - sod_mm < MIN_ISOCENTRE_TO_DETECTOR_MM and tags.magnification is None:
        raise GeometryError(
            f"{view}: source-to-isocentre {sod_mm:g} mm leaves {sid_mm - sod_mm:g} mm to the detector "
            f"(SID {sid_mm:g} mm); a head needs at least {MIN_ISOCENTRE_TO_DETECTOR_MM:g} mm"
        )

    pitch_mm = _resolve_pitch(tags, sid_mm / sod_mm, notes)

    if tags.patient_orientation is None:
        orientation = DEFAULT_ORIENTATION[view]
        notes.append(f"{view}: PatientOrientation absent, default {_joined(orientation)}")
    else:
        orientation = tags.patient_orientation
    row_dir, col_dir = _detector_axes(view, orientation)
    return ViewGeometry(
        view=view,
        sid_mm=sid_mm,
        sod_mm=sod_mm,
        pitch_mm=pitch_mm,
        shape_px=(tags.rows, tags.columns),
        row_direction=row_dir,  # type: ignore[arg-type]
        column_direction=col_dir,  # type: ignore[arg-type]
        notes=tuple(notes),
    )


def _resolve_pitch(tags: GeometryTags, magnification: float, notes: list[str]) -> tuple[float, float]:
    view = tags.view
    if tags.imager_pitch_mm is not None:
        name, values = "ImagerPixelSpacing (0018,1164)", tags.imager_pitch_mm
        scale = 1.0
    elif tags.pixel_spacing_mm is not None:
        name, values = "PixelSpacing (0028,0030)", tags.pixel_spacing_mm
        calibration = (tags.pixel_spacing_calibration or "").strip().upper()
        if calibration in ("GEOMETRY", "FIDUCIAL"):
            # Calibrated in the patient plane (PS3.3 C.7.6.3.1.7): back to the detector plane.
            scale = magnification
            notes.append(f"{view}: pitch from PixelSpacing calibrated {calibration}, scaled by magnification")
        else:
            scale = 1.0
            notes.append(f"{view}: ImagerPixelSpacing absent, PixelSpacing taken as the detector pitch")
    else:
        notes.append(f"{view}: no pixel spacing, default pitch {DEFAULT_PITCH_MM:g} mm")
        return (DEFAULT_PITCH_MM, DEFAULT_PITCH_MM)
    if len(values) != 2:
        raise GeometryError(f"{name} must have 2 values (row\\column), got {list(values)}")
    checked = [_check_range(name, float(v), *PITCH_RANGE_MM, " mm") for v in values]
    return (checked[0] * scale, checked[1] * scale)
