"""Seeded mutations of valid radiograph files, for the fuzz tests: broken bytes and nasty values in
the attributes the reading path uses. Each mutation is a pure function of its `random.Random`."""

from __future__ import annotations

import io
import random

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

# What the reading path looks at: image pixel module, geometry, identity, view, encoding.
KEYWORDS = (
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
    "PhotometricInterpretation", "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth",
    "ImagerPixelSpacing", "PixelSpacing", "DistanceSourceToDetector", "DistanceSourceToPatient",
    "EstimatedRadiographicMagnificationFactor", "PatientOrientation", "ViewPosition", "SOPClassUID",
    "StudyInstanceUID", "SOPInstanceUID", "PixelData", "NumberOfFrames", "PixelIntensityRelationship",
    "PixelIntensityRelationshipSign", "SpecificCharacterSet", "PatientName", "PatientID", "ImageLaterality",
    "PresentationIntentType", "Modality", "PlanarConfiguration",
)  # fmt: skip
NASTY_TEXT = (
    "", " ", "0", "-1", "-0.0", "1e308", "1e-308", "nan", "NaN", "inf", "-inf", "abc", "1\\2\\3", "0\\0",
    "-1\\-1", "9" * 40, "A" * 300, "../../etc/passwd", "1.2.3\x00", "\x00", "é", "PA\\LL", "LATERAL", "AP",
    "MONOCHROME1", "RGB", "YBR_FULL", "PALETTE COLOR", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.4.50",
)  # fmt: skip
NASTY_INTS = (0, 1, -1, 2, 7, 8, 12, 15, 16, 17, 31, 32, 33, 64, 65535, 65536, 2**31 - 1)


def _set(ds: Dataset, keyword: str, rnd: random.Random) -> None:
    """Replace (or add) `keyword` with a value of the wrong size, sign, type or meaning."""
    if keyword == "PixelData" and "PixelData" in ds:
        data = bytes(ds.PixelData)
        choice = rnd.randrange(4)
        cut = rnd.randrange(len(data) + 1)
        ds.PixelData = (data[:cut], b"", data + data, data[: cut | 1])[choice]
        return
    element = ds.data_element(keyword) if keyword in ds else None
    vr = element.VR if element is not None else "LO"  # a tag that was absent comes as LO
    if vr in ("US", "SS", "UL", "SL"):
        value = abs(rnd.choice(NASTY_INTS)) % (2**16 if vr in ("US", "SS") else 2**32)
        ds[keyword] = DataElement(tag_for_keyword(keyword), vr, value)
        return
    # Text goes in as raw bytes, as a PACS would send it: pydicom converts (or fails) when read.
    raw = rnd.choice(NASTY_TEXT).encode("latin-1", "replace")
    raw += b" " * (len(raw) % 2)
    tag = tag_for_keyword(keyword)
    ds[tag] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, True, True)  # type: ignore[assignment]


def mutate(original: bytes, rnd: random.Random) -> bytes:
    """One mutated file: up to three value edits, deletions or byte-level breakages."""
    data = original
    for _ in range(rnd.randint(1, 3)):
        if len(data) < 2:  # cut to nothing already
            break
        kind = rnd.random()
        if kind < 0.6:  # edit or delete an attribute, then encode as a PACS would send it
            keyword, delete = rnd.choice(KEYWORDS), rnd.random() < 0.3
            buffer = io.BytesIO()
            try:
                ds = dcmread(io.BytesIO(data), force=True)
                if delete:
                    ds.pop(keyword, None)
                else:
                    _set(ds, keyword, rnd)
                ds.save_as(buffer, enforce_file_format=False)
            except Exception:  # bytes broken by an earlier step, or a value pydicom will not encode
                continue
            data = buffer.getvalue()
        elif kind < 0.75:  # flip bytes anywhere (header and pixels alike)
            raw = bytearray(data)
            for _ in range(rnd.randint(1, 16)):
                raw[rnd.randrange(len(raw))] = rnd.randrange(256)
            data = bytes(raw)
        elif kind < 0.9:  # a transfer cut short
            data = data[: rnd.randrange(1, len(data))]
        else:  # junk inserted
            at = rnd.randrange(len(data))
            data = data[:at] + rnd.randbytes(rnd.randint(1, 64)) + data[at:]
    return data
