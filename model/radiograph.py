"""What one radiograph says: its view, its geometry tags and its displayed pixel values.

Parsing only: a pydicom Dataset in, plain values out. Reading files and networks happens in
`service/` and `worker/`.
"""

from __future__ import annotations

import re

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from model.errors import ModelInputError
from model.geometry import DEFAULT_LATERAL, STANDARD_ROOM, GeometryTags, RoomDefaults, ViewGeometry, resolve_view

# Storage SOP classes we accept (PS3.4 B.5): CR, DX for presentation, DX for processing.
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1.1"
RADIOGRAPH_SOP_CLASSES = (CR_IMAGE_STORAGE, DX_PRESENTATION_STORAGE, DX_PROCESSING_STORAGE)

# Words that name a view, in ViewPosition (0018,5101) and free-text tags (CONTRACT.md "DICOM").
VIEW_WORDS = {"PA": "PA", "AP": "AP", "LL": "LL", "RL": "RL", "LATERAL": "LAT", "LAT": "LAT"}
# ViewCodeSequence (0054,0220) meanings, CID 4010 (DX View).
VIEW_MEANINGS = (
    ("postero-anterior", "PA"),
    ("antero-posterior", "AP"),
    ("left lateral", "LL"),
    ("right lateral", "RL"),
    ("lateral", "LAT"),
)
FREE_TEXT_VIEW_TAGS = ("SeriesDescription", "ProtocolName", "AcquisitionDeviceProcessingDescription")


# Numbers the pixel value transforms use (PS3.3 C.11.1, C.11.2, C.8.11.3).
PIXEL_TRANSFORM_NUMBERS = (
    "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "PixelIntensityRelationshipSign",
)  # fmt: skip


class RadiographError(ModelInputError):
    """The instance is not a usable radiograph; the message says why."""


def view_family(view: str) -> str:
    """'pa' for PA/AP, 'lateral' for LL/RL."""
    return "pa" if view in ("PA", "AP") else "lateral"


def classify_view(ds: Dataset) -> tuple[str, list[str]]:
    """(PA, AP, LL or RL; notes) from ViewPosition, else ViewCodeSequence, else descriptions."""
    notes: list[str] = []
    found = _view_from_words(str(ds.get("ViewPosition", "") or ""))
    source = "ViewPosition"
    if found is None:
        for item in ds.get("ViewCodeSequence", []) or []:
            meaning = str(item.get("CodeMeaning", "")).lower()
            found = next((v for text, v in VIEW_MEANINGS if text in meaning), None)
            source = "ViewCodeSequence"
            if found:
                break
    for tag in FREE_TEXT_VIEW_TAGS:
        if found is not None:
            break
        found, source = _view_from_words(str(ds.get(tag, "") or "")), tag
    if found is None:
        raise RadiographError(
            f"view unknown: ViewPosition (0018,5101) is {str(ds.get('ViewPosition', '') or '')!r} and no "
            "PA/AP/LL/RL/LATERAL is named in ViewCodeSequence or the descriptions"
        )
    if found == "LAT":
        found = DEFAULT_LATERAL
        notes.append(f"{source} says lateral without a side: taken as {DEFAULT_LATERAL}")
    return found, notes


def _view_from_words(text: str) -> str | None:
    views = {VIEW_WORDS[w] for w in re.split(r"[^A-Z]+", text.upper()) if w in VIEW_WORDS}
    if len(views) == 2 and "LAT" in views:  # "LAT LL" names one view
        views.discard("LAT")
    return views.pop() if len(views) == 1 else None


def _floats(ds: Dataset, keyword: str) -> tuple[float, ...] | None:
    """The numbers in `keyword`, None when absent; refused when not finite numbers."""
    try:
        value = ds.get(keyword)  # a raw value is converted here: 'abc' in a DS fails now
    except (TypeError, ValueError, OverflowError) as exc:
        raise RadiographError(f"{keyword} cannot be read as a number: {str(exc)[:80]}") from None
    if value is None or value == "":
        return None
    try:
        items = [value] if isinstance(value, str | bytes | int | float) else list(value)
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError, OverflowError):
        raise RadiographError(f"{keyword} is {str(value)[:60]!r}: not a number") from None
    if not all(np.isfinite(numbers)):
        raise RadiographError(f"{keyword} is {str(value)[:60]!r}: not a finite number")
    return numbers


def _one(ds: Dataset, keyword: str) -> float | None:
    values = _floats(ds, keyword)
    return None if values is None else values[0]


def _whole(ds: Dataset, keyword: str) -> int:
    value = _one(ds, keyword) or 0.0
    if value != int(value):
        raise RadiographError(f"{keyword} is {value:g}: not a whole number")
    return int(value)


def _pair(ds: Dataset, keyword: str) -> tuple[float, float] | None:
    values = _floats(ds, keyword)
    if values is None:
        return None
    if len(values) != 2:
        raise RadiographError(f"{keyword} must have 2 values (row\\column), got {list(values)}")
    return (values[0], values[1])


def geometry_tags(ds: Dataset, view: str) -> GeometryTags:
    """The geometry attributes of `ds`, None where absent."""
    if "PixelData" not in ds:
        raise RadiographError("no pixel data (7FE0,0010) in the instance")
    orientation = ds.get("PatientOrientation")
    if orientation is not None and len(orientation) == 2 and all(str(v).strip() for v in orientation):
        po: tuple[str, str] | None = (str(orientation[0]), str(orientation[1]))
    elif orientation:
        raise RadiographError(f"PatientOrientation (0020,0020) is {orientation!r}: need 2 values (rows\\columns)")
    else:
        po = None
    calibration = ds.get("PixelSpacingCalibrationType")
    return GeometryTags(
        view=view,
        rows=_whole(ds, "Rows"),
        columns=_whole(ds, "Columns"),
        sid_mm=_one(ds, "DistanceSourceToDetector"),
        source_to_patient_mm=_one(ds, "DistanceSourceToPatient"),
        magnification=_one(ds, "EstimatedRadiographicMagnificationFactor"),
        imager_pitch_mm=_pair(ds, "ImagerPixelSpacing"),
        pixel_spacing_mm=_pair(ds, "PixelSpacing"),
        pixel_spacing_calibration=str(calibration) if calibration else None,
        patient_orientation=po,
    )


def display_values(ds: Dataset) -> np.ndarray:
    """Pixel values as displayed, bright = more attenuation, float64 (rows, columns).

    Modality LUT, then VOI LUT or window (PS3.4 N.2.1), then MONOCHROME1 inverted so that every
    input follows the MONOCHROME2 convention, whatever the vendor chose.
    """
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for truncated or undecodable data
        raise RadiographError(f"pixel data cannot be decoded: {exc}") from None
    if pixels.ndim != 2:
        raise RadiographError(f"expected one greyscale frame, got pixel array of shape {pixels.shape}")
    for keyword in PIXEL_TRANSFORM_NUMBERS:
        _floats(ds, keyword)  # refuses what is not a finite number, naming the attribute
    try:
        if str(ds.get("PixelIntensityRelationship", "")).strip() == "LIN":
            values = _attenuation_of_linear(apply_modality_lut(pixels, ds).astype(np.float64), ds)
        else:
            values = apply_voi_lut(apply_modality_lut(pixels, ds), ds).astype(np.float64)
            if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
                values = -values
    except RadiographError:
        raise
    except Exception as exc:  # broken LUT sequences or multi-valued rescales: pydicom raises many types
        raise RadiographError(f"the pixel value transforms (rescale, window, LUT) cannot be applied: {exc}") from None
    if not np.all(np.isfinite(values)) or np.ptp(values) == 0:
        raise RadiographError("pixel data is constant or not finite: nothing to reconstruct from")
    return values


def _attenuation_of_linear(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """A linear (for processing) image as -log(signal / brightest signal): the log image a vendor
    would have made. The sign says which way the signal runs (PS3.3 C.8.11.3.1.2); a display
    window is for viewing raw data, so it is not applied."""
    if _one(ds, "PixelIntensityRelationshipSign") == -1:  # higher values: less signal
        values = values.max() - values
    brightest = float(values.max())
    if brightest <= 0:
        raise RadiographError("linear pixel data has no positive signal: nothing to reconstruct from")
    return -np.log(np.clip(values, brightest * 1e-4, None) / brightest)  # 1e-4: ~9 attenuation lengths, no log(0)


def read_view(ds: Dataset, room: RoomDefaults = STANDARD_ROOM) -> tuple[str, ViewGeometry, list[str]]:
    """(view, geometry, notes) of one radiograph: everything but its pixels, checked; `room` fills
    missing distances."""
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class and sop_class not in RADIOGRAPH_SOP_CLASSES:
        raise RadiographError(f"SOPClassUID {sop_class} is not CR or DX Image Storage")
    view, notes = classify_view(ds)
    geometry = resolve_view(geometry_tags(ds, view), room)
    return view, geometry, notes + list(geometry.notes)
