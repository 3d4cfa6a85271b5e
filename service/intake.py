"""Checks every incoming radiograph before it is acknowledged: parseable, identified, usable.

Shared by the REST gateway and the DICOM listener, so both refuse the same things the same way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from model.errors import ModelInputError
from model.geometry import STANDARD_ROOM, RoomDefaults
from model.radiograph import RADIOGRAPH_SOP_CLASSES, display_values, read_view, view_family
from service.errors import InputError


@dataclass(frozen=True)
class Radiograph:
    dataset: Dataset
    view: str  # PA, AP, LL, RL
    study_uid: str
    sop_uid: str
    patient_id: str
    notes: list[str] = field(default_factory=list)

    @property
    def family(self) -> str:
        return view_family(self.view)


def checked_uid(ds: Dataset, keyword: str) -> str:
    value = str(ds.get(keyword, "") or "").strip()
    if not value:
        raise InputError(f"{keyword} is missing")
    if not UID(value).is_valid:
        raise InputError(f"{keyword} {value[:70]!r} is not a valid DICOM UID (digits and dots, at most 64)")
    return value


def inspect(ds: Dataset, room: RoomDefaults = STANDARD_ROOM) -> Radiograph:
    """Refuse what cannot be reconstructed (geometry resolved as the worker will, with `room`), with a
    message naming the problem."""
    sop_class = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", ""))
    if sop_class not in RADIOGRAPH_SOP_CLASSES:
        raise InputError(f"SOPClassUID {sop_class or '(missing)'} is not CR or DX Image Storage")
    study_uid = checked_uid(ds, "StudyInstanceUID")
    sop_uid = checked_uid(ds, "SOPInstanceUID")
    try:
        view, _geometry, notes = read_view(ds, room)
        display_values(ds)  # decodes: never acknowledge pixels we cannot read
    except ModelInputError as exc:
        raise InputError(str(exc)) from None
    return Radiograph(ds, view, study_uid, sop_uid, str(ds.get("PatientID", "") or ""), notes)


def parse(data: bytes, what: str) -> Dataset:
    """A DICOM Part 10 file from bytes; `what` names it in the error."""
    try:
        ds = dcmread(io.BytesIO(data))
        # Convert every value now (file meta too): truncation or a bad VR shows here, not later.
        for _element in (*ds.file_meta.iterall(), *ds.iterall()):
            pass
    except Exception as exc:  # pydicom raises many types for broken bytes (found by tests/service/test_fuzz.py)
        raise InputError(f"{what} is not a readable DICOM file: {type(exc).__name__}: {str(exc)[:200]}") from None
    return ds


def check_pair(pa: Radiograph, lateral: Radiograph) -> None:
    if pa.family != "pa":
        raise InputError(f"field 'pa' holds a {pa.view} view, not PA or AP")
    if lateral.family != "lateral":
        raise InputError(f"field 'lateral' holds a {lateral.view} view, not LL or RL")
    if pa.patient_id != lateral.patient_id:
        # The IDs themselves stay out of the message: it ends up in logs.
        raise InputError("the two radiographs belong to different patients (their PatientID differ)")
