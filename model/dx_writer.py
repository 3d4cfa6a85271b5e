"""DX (for presentation or processing) and CR instances for a simulated pair: truthful geometry tags.

Builds pydicom Datasets only; writing files is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from model.geometry import ViewGeometry
from model.radiograph import CR_IMAGE_STORAGE, DX_PRESENTATION_STORAGE, DX_PROCESSING_STORAGE

# Photons per detector pixel behind air at the stated dose: sets the quantum noise of the sim.
PHOTONS_PER_PIXEL = 20_000
STORED_BITS = 12
# CID 4010 "DX View" (PS3.16), SNOMED CT.
VIEW_CODES = {
    "PA": ("399348003", "SCT", "postero-anterior"),
    "AP": ("399182002", "SCT", "antero-posterior"),
    "LL": ("399173006", "SCT", "left lateral"),
    "RL": ("399198007", "SCT", "right lateral"),
}


@dataclass(frozen=True, slots=True)
class Study:
    patient_name: str
    patient_id: str
    study_uid: str
    study_date: str = "20260101"
    patient_sex: str = "O"
    patient_birth_date: str = ""


def study_for_seed(seed: int) -> Study:
    return Study(
        patient_name="PSCT^Phantom",
        patient_id=f"PHANTOM-{seed}",
        study_uid=generate_uid(entropy_srcs=[f"psct-sim/{seed}/study"]),
    )


def presentation_pixels(line_integral: np.ndarray, rng: np.random.Generator, monochrome1: bool = False) -> np.ndarray:
    """Quantum-noisy log image scaled to 12 bits, bone bright (inverted for MONOCHROME1)."""
    counts = rng.poisson(PHOTONS_PER_PIXEL * np.exp(-line_integral))
    noisy = -np.log(np.maximum(counts, 1) / PHOTONS_PER_PIXEL)
    top = (1 << STORED_BITS) - 1
    stored = np.clip(np.round(noisy / max(float(noisy.max()), 1e-6) * top), 0, top).astype(np.uint16)
    return top - stored if monochrome1 else stored


SOP_CLASSES = {"DX": DX_PRESENTATION_STORAGE, "DX-processing": DX_PROCESSING_STORAGE, "CR": CR_IMAGE_STORAGE}
# DX modules (DX Anatomy Imaged, DX Image, DX Detector, DX Positioning) that the CR IOD lacks.
DX_ONLY = (
    "PresentationIntentType", "ImageLaterality", "AnatomicRegionSequence", "ViewCodeSequence", "DetectorType",
    "PositionerType", "AcquisitionContextSequence", "EstimatedRadiographicMagnificationFactor",
    "PixelIntensityRelationship", "PixelIntensityRelationshipSign", "ImageType", "PresentationLUTShape",
)  # fmt: skip

# Geometry attributes a vendor may leave out (`omit=`), to exercise the documented defaults. Only
# type 3 attributes of the DX modules, so the instance stays valid (ImagerPixelSpacing and
# PatientOrientation are type 1 in DX).
OPTIONAL_GEOMETRY = (
    "DistanceSourceToDetector", "DistanceSourceToPatient", "EstimatedRadiographicMagnificationFactor",
)  # fmt: skip


def radiograph_dataset(
    pixels: np.ndarray,
    g: ViewGeometry,
    study: Study,
    instance: int,
    monochrome1: bool = False,
    bits: int = STORED_BITS,
    omit: frozenset[str] = frozenset(),
    storage: str = "DX",
    relationship: str = "LOG",
) -> Dataset:
    """One DX (`storage` "DX" for presentation, "DX-processing") or CR instance carrying `g` in its
    geometry attributes (less `omit`). `relationship` LIN: pixels proportional to the X-ray signal."""
    sop_class = SOP_CLASSES[storage]
    sop_uid = generate_uid(entropy_srcs=[study.study_uid, g.view, str(instance)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.PatientName, ds.PatientID = study.patient_name, study.patient_id
    ds.PatientBirthDate, ds.PatientSex = study.patient_birth_date, study.patient_sex
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study.study_uid, study.study_date, "120000"
    ds.ContentDate, ds.ContentTime = study.study_date, "120000"
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.Modality = "CR" if storage == "CR" else "DX"
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[study.study_uid, g.view, "series"])
    ds.SeriesNumber, ds.InstanceNumber = instance, 1
    ds.SeriesDescription = f"Skull {g.view} (PSCT simulated)"
    ds.Manufacturer = "PSCT simulator"
    ds.PresentationIntentType = "FOR PROCESSING" if storage == "DX-processing" else "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if storage == "DX-processing" else ["DERIVED", "PRIMARY"]
    ds.ImageLaterality = "U"
    ds.AnatomicRegionSequence = Sequence([_code("89546000", "SCT", "Skull")])
    ds.BodyPartExamined = "SKULL"
    ds.ViewPosition = g.view
    ds.ViewCodeSequence = Sequence([_code(*VIEW_CODES[g.view])])
    ds.PatientOrientation = [_letters(g.row_direction), _letters(g.column_direction)]
    ds.DistanceSourceToDetector = f"{g.sid_mm:.1f}"
    ds.DistanceSourceToPatient = f"{g.sod_mm:.1f}"
    ds.EstimatedRadiographicMagnificationFactor = f"{g.magnification:.6f}"
    ds.ImagerPixelSpacing = [f"{g.pitch_mm[0]:.4f}", f"{g.pitch_mm[1]:.4f}"]
    ds.DetectorType = "DIRECT"
    ds.PositionerType = ""
    ds.KVP = "80"
    ds.AcquisitionContextSequence = Sequence()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.PixelIntensityRelationship = relationship
    # +1: lower values mean less X-ray signal (MONOCHROME1 log images, linear raw signal).
    ds.PixelIntensityRelationshipSign = 1 if monochrome1 or relationship == "LIN" else -1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.WindowCenter, ds.WindowWidth = str(1 << (bits - 1)), str(1 << bits)
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    if storage == "DX-processing":  # a display window is for presentation images only (PS3.3 C.8.11.3.1.5)
        del ds.WindowCenter, ds.WindowWidth
    if storage == "CR":
        for keyword in DX_ONLY:
            delattr(ds, keyword)
    for keyword in omit:
        if keyword not in OPTIONAL_GEOMETRY:
            raise ValueError(f"{keyword} is not an optional geometry attribute: {', '.join(OPTIONAL_GEOMETRY)}")
        if keyword in ds:  # CR has no magnification attribute to leave out
            delattr(ds, keyword)
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _letters(direction: tuple[float, float, float]) -> str:
    """Dominant patient-direction letter of an LPS unit vector."""
    axis = int(np.argmax(np.abs(direction)))
    return ("LR", "PA", "HF")[axis][0 if direction[axis] > 0 else 1]
