"""The output: one classic CT Image Storage instance per axial slice (CONTRACT.md "Output").

UIDs derive from the job id, so a redelivered task, a retry or a resend rewrites the same series.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"
# Stored HU range: air floor of CT, 12-bit scanner ceiling.
HU_MIN, HU_MAX = -1024, 3071
# Bone window for display (level/width, HU).
BONE_WINDOW = (500, 2000)
SERIES_NUMBER = 9901  # high, so it sorts after the acquired series of the study

# Patient and study attributes copied from the PA input: (keyword, DICOM type). Type 2 ones are
# written empty when the input lacks them (PS3.3 C.7.1.1, C.7.2.1).
COPIED = (
    ("PatientName", 2),
    ("PatientID", 2),
    ("IssuerOfPatientID", 3),
    ("PatientBirthDate", 2),
    ("PatientSex", 2),
    ("PatientAge", 3),
    ("PatientSize", 3),
    ("PatientWeight", 3),
    ("StudyInstanceUID", 1),
    ("StudyDate", 2),
    ("StudyTime", 2),
    ("ReferringPhysicianName", 2),
    ("StudyID", 2),
    ("AccessionNumber", 2),
    ("StudyDescription", 3),
)


@dataclass(frozen=True)
class SeriesUids:
    series: str
    frame_of_reference: str

    @classmethod
    def for_job(cls, job_id: str) -> SeriesUids:
        return cls(
            series=generate_uid(entropy_srcs=[f"{job_id}/series"]),
            frame_of_reference=generate_uid(entropy_srcs=[f"{job_id}/frame-of-reference"]),
        )


def instance_uid(job_id: str, index: int) -> UID:
    return generate_uid(entropy_srcs=[f"{job_id}/instance/{index}"])


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _sources(inputs: list[Dataset]) -> Sequence:
    items = []
    for ds in inputs:
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        # DCM 121322 "Source image for image processing operation" (PS3.16 CID 7202).
        item.PurposeOfReferenceCodeSequence = Sequence(
            [_code("121322", "DCM", "Source image for image processing operation")]
        )
        items.append(item)
    return Sequence(items)


def _contributing_equipment(model_name: str, model_version: str, when: datetime) -> Sequence:
    item = Dataset()
    # DCM 109102 "Processing Equipment" (PS3.16 CID 7005).
    item.PurposeOfReferenceCodeSequence = Sequence([_code("109102", "DCM", "Processing Equipment")])
    item.Manufacturer = "PSCT"
    item.ManufacturerModelName = model_name[:64]
    item.SoftwareVersions = model_version[:64]
    item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S")
    item.ContributionDescription = (
        f"3D research reconstruction from a PA and a lateral radiograph ({NOT_FOR_DIAGNOSIS})"
    )
    return Sequence([item])


# The data engine's ground truth of a simulated pair is written as a series too (`psct simulate`).
SIMULATED_TRUTH = "simulated-truth"


def series_description(kind: str) -> str:
    if kind == SIMULATED_TRUTH:
        return f"PSCT simulated ground truth - {NOT_FOR_DIAGNOSIS}"
    what = "physics baseline" if kind == "physics-baseline" else "reconstruction"
    return f"PSCT-Net {what} - {NOT_FOR_DIAGNOSIS}"  # LO: at most 64 characters


def derivation(model: dict) -> str:
    if model.get("kind") == SIMULATED_TRUTH:
        return (
            f"Ground truth of a simulated PA and lateral radiograph pair ({model.get('name')} "
            f"{model.get('version')}); synthetic research data. {NOT_FOR_DIAGNOSIS}."
        )
    return (
        f"Research reconstruction by {model.get('name')} {model.get('version')} from a PA and a lateral "
        f"radiograph. {NOT_FOR_DIAGNOSIS}."
    )


def comments(model: dict, geometry_notes: list[str] | None) -> str:
    """ImageComments (LT, 10,240 characters): the derivation, then every geometry default or
    approximation used, because a default distance scales the whole volume (MODEL_CARD)."""
    text = derivation(model)
    if geometry_notes:
        text += " Geometry defaults and approximations used: " + "; ".join(geometry_notes) + "."
    return text[:10240]


def ct_series(
    volume_hu: np.ndarray,
    voxel_mm: float,
    pa: Dataset,
    lateral: Dataset,
    job_id: str,
    model: dict,
    when: datetime,
    geometry_notes: list[str] | None = None,
) -> list[Dataset]:
    """One CT instance per axial slice of `volume_hu` (z, y, x; LPS grid centred on the isocentre)."""
    uids = SeriesUids.for_job(job_id)
    depth, rows, columns = volume_hu.shape
    x0 = -(columns - 1) / 2.0 * voxel_mm
    y0 = -(rows - 1) / 2.0 * voxel_mm
    stored = np.clip(np.rint(volume_hu), HU_MIN, HU_MAX).astype("<i2")
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    shared = Dataset()
    shared.SpecificCharacterSet = "ISO_IR 192"
    for keyword, dicom_type in COPIED:
        value = pa.get(keyword)
        if value not in (None, ""):
            setattr(shared, keyword, value)
        elif dicom_type <= 2:
            setattr(shared, keyword, "")
    shared.Modality = "CT"
    shared.SeriesInstanceUID = uids.series
    shared.SeriesNumber = SERIES_NUMBER
    shared.SeriesDescription = series_description(model.get("kind", ""))
    shared.SeriesDate, shared.SeriesTime = date, time
    shared.Laterality = ""
    shared.PatientPosition = ""  # radiographs taken upright or prone: no CT table position applies
    shared.FrameOfReferenceUID = uids.frame_of_reference
    shared.PositionReferenceIndicator = ""
    shared.Manufacturer = "PSCT"
    shared.ManufacturerModelName = str(model.get("name", "psct"))[:64]
    shared.SoftwareVersions = str(model.get("version", ""))[:64]
    shared.ContentDate, shared.ContentTime = date, time
    shared.InstanceCreationDate, shared.InstanceCreationTime = date, time
    shared.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    shared.DerivationDescription = derivation(model)
    shared.ImageComments = comments(model, geometry_notes)
    shared.SourceImageSequence = _sources([pa, lateral])
    shared.ContributingEquipmentSequence = _contributing_equipment(
        str(model.get("name")), str(model.get("version")), when
    )
    shared.BurnedInAnnotation = "NO"
    shared.LossyImageCompression = "00"
    shared.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelSpacing = [f"{voxel_mm:g}", f"{voxel_mm:g}"]
    shared.SliceThickness = f"{voxel_mm:g}"
    shared.KVP = ""
    shared.AcquisitionNumber = ""
    shared.SamplesPerPixel = 1
    shared.PhotometricInterpretation = "MONOCHROME2"
    shared.Rows, shared.Columns = rows, columns
    shared.BitsAllocated, shared.BitsStored, shared.HighBit, shared.PixelRepresentation = 16, 16, 15, 1
    shared.RescaleIntercept, shared.RescaleSlope, shared.RescaleType = "0", "1", "HU"
    shared.WindowCenter, shared.WindowWidth = str(BONE_WINDOW[0]), str(BONE_WINDOW[1])
    shared.WindowCenterWidthExplanation = "BONE"
    shared.SOPClassUID = CT_IMAGE_STORAGE

    instances = []
    for k in range(depth):
        ds = Dataset()
        ds.update(shared)
        z_mm = (k - (depth - 1) / 2.0) * voxel_mm
        ds.SOPInstanceUID = instance_uid(job_id, k)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{x0:.3f}", f"{y0:.3f}", f"{z_mm:.3f}"]
        ds.SliceLocation = f"{z_mm:.3f}"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = instance_uid(job_id, k)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        instances.append(ds)
    return instances
