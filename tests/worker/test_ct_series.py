"""The output CT series: valid (dciodvfy, strict read-back), truthful, idempotent UIDs."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from model.dx_writer import OPTIONAL_GEOMETRY
from model.simulate import simulate_pair
from service.files import write_series
from service.settings import DEFAULT_MODEL
from tests.conftest import dciodvfy_errors, read_strict
from worker.ct_series import NOT_FOR_DIAGNOSIS, ct_series
from worker.pipeline import reconstruct
from worker.runtime import cached

JOB_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def pair():  # type: ignore[no-untyped-def]
    return simulate_pair(age_y=1.0, seed=21)


@pytest.fixture(scope="module")
def volume(pair) -> np.ndarray:  # type: ignore[no-untyped-def]
    return reconstruct(pair.pa, pair.lateral, cached(DEFAULT_MODEL))[0]


def series(pair, volume, job_id: str = JOB_ID):  # type: ignore[no-untyped-def]
    runtime = cached(DEFAULT_MODEL)
    return ct_series(volume, runtime.voxel_mm, pair.pa, pair.lateral, job_id, runtime.sidecar, datetime.now(UTC))


def test_every_instance_passes_dciodvfy_and_strict_reading(pair, volume, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = write_series(tmp_path, JOB_ID, series(pair, volume))
    assert len(paths) == volume.shape[0]
    for path in paths:
        assert dciodvfy_errors(path) == [], path
        read_strict(path)


def test_series_keeps_the_contract(pair, volume) -> None:  # type: ignore[no-untyped-def]
    instances = series(pair, volume)
    first, last = instances[0], instances[-1]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert list(first.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert first.StudyInstanceUID == pair.pa.StudyInstanceUID
    assert first.PatientID == pair.pa.PatientID and first.PatientName == pair.pa.PatientName
    assert "PSCT-Net" in first.SeriesDescription and NOT_FOR_DIAGNOSIS in first.SeriesDescription
    assert "reconstruction" in first.SeriesDescription  # the shipped default is the learned model
    assert first.SpecificCharacterSet == "ISO_IR 192"
    assert {s.ReferencedSOPInstanceUID for s in first.SourceImageSequence} == {
        pair.pa.SOPInstanceUID,
        pair.lateral.SOPInstanceUID,
    }
    equipment = first.ContributingEquipmentSequence[0]
    assert equipment.ManufacturerModelName == "psct-net" and equipment.SoftwareVersions
    # Centred on the isocentre: first and last voxel centres are mirror images.
    corner_first = np.array(first.ImagePositionPatient, dtype=float)
    corner_last = np.array(last.ImagePositionPatient, dtype=float) + [
        (last.Columns - 1) * float(last.PixelSpacing[1]),
        (last.Rows - 1) * float(last.PixelSpacing[0]),
        0.0,
    ]
    np.testing.assert_allclose(corner_first, -corner_last, atol=1e-3)
    assert len({i.SeriesInstanceUID for i in instances}) == 1
    assert len({i.SOPInstanceUID for i in instances}) == len(instances)


def test_stored_values_are_hounsfield_units(pair, volume) -> None:  # type: ignore[no-untyped-def]
    k = volume.shape[0] // 2
    ds = series(pair, volume)[k]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    read = dcmread(io.BytesIO(buffer.getvalue()))
    hu = read.pixel_array * float(read.RescaleSlope) + float(read.RescaleIntercept)
    np.testing.assert_allclose(hu, np.clip(np.rint(volume[k]), -1024, 3071), atol=0)


def test_uids_derive_from_the_job_id(pair, volume) -> None:  # type: ignore[no-untyped-def]
    a, b, other = series(pair, volume), series(pair, volume), series(pair, volume, "f" * 32)
    assert [i.SOPInstanceUID for i in a] == [i.SOPInstanceUID for i in b]
    assert a[0].SeriesInstanceUID == b[0].SeriesInstanceUID != other[0].SeriesInstanceUID
    assert a[0].FrameOfReferenceUID == b[0].FrameOfReferenceUID
    assert not {i.SOPInstanceUID for i in a} & {i.SOPInstanceUID for i in other}


@pytest.mark.parametrize(
    ("charset", "name"),
    [
        ("ISO_IR 192", "Gómez^Zoë"),
        ("ISO_IR 100", "Müller^Jürgen"),
        ("ISO 2022 IR 87", "Yamada^Tarou=山田^太郎"),
    ],
)
def test_patient_names_survive_into_the_series(pair, volume, charset: str, name: str) -> None:  # type: ignore[no-untyped-def]
    source = pair.pa.copy()
    source.SpecificCharacterSet = charset if charset != "ISO 2022 IR 87" else ["", "ISO 2022 IR 87"]
    source.PatientName = name
    raw = io.BytesIO()
    source.save_as(raw, enforce_file_format=True)
    encoded_input = dcmread(io.BytesIO(raw.getvalue()))
    runtime = cached(DEFAULT_MODEL)
    out = ct_series(volume, runtime.voxel_mm, encoded_input, pair.lateral, JOB_ID, runtime.sidecar, datetime.now(UTC))
    written = io.BytesIO()
    out[0].save_as(written, enforce_file_format=True)
    assert str(dcmread(io.BytesIO(written.getvalue())).PatientName) == name


def test_geometry_defaults_used_are_written_into_every_instance(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A default distance rescales the whole volume (MODEL_CARD): the series itself must say so.
    pa = pair.pa.copy()
    for keyword in OPTIONAL_GEOMETRY:  # the distance tags a vendor may leave out
        if keyword in pa:
            delattr(pa, keyword)
    runtime = cached(DEFAULT_MODEL)
    volume, notes = reconstruct(pa, pair.lateral, runtime)
    assert any("DistanceSourceToDetector absent" in note for note in notes)
    instances = ct_series(volume, runtime.voxel_mm, pa, pair.lateral, JOB_ID, runtime.sidecar, datetime.now(UTC), notes)
    for ds in (instances[0], instances[-1]):
        assert ds.ImageComments.startswith(ds.DerivationDescription)
        assert all(note in ds.ImageComments for note in notes)
    path = write_series(tmp_path, JOB_ID, instances[:1])[0]
    assert dciodvfy_errors(path) == []
    # Without defaults, the comments are the derivation alone.
    assert series(pair, volume)[0].ImageComments == series(pair, volume)[0].DerivationDescription
