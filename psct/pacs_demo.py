"""The demo PACS round trip (`docker compose --profile demo run --rm demo`): put a simulated PA +
lateral pair into Orthanc, have Orthanc C-STORE the study to PSCT, and wait until PSCT's CT series
is back in the same study in Orthanc. Talks to Orthanc's REST API only; PSCT is reached through
Orthanc, as a hospital's PACS would reach it.

    python -m psct.pacs_demo --orthanc http://127.0.0.1:8042 --modality psct
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import urllib.request

from pydicom.uid import generate_uid

from model.simulate import simulate_pair

POLL_S = 2.0


def _call(base: str, path: str, body: bytes | None = None, content_type: str = "application/json") -> object:
    request = urllib.request.Request(f"{base}{path}", data=body, method="POST" if body is not None else "GET")
    if body is not None:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read() or b"null")


def _fresh_pair(age_y: float, seed: int) -> list[bytes]:
    """The analytic test phantom's pair under new UIDs, so every run is a new study for PSCT."""
    pair = simulate_pair(age_y, seed)
    study = generate_uid()
    encoded = []
    for ds in (pair.pa, pair.lateral):
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        encoded.append(buffer.getvalue())
    return encoded


def _ct_series(base: str, study_id: str) -> list[dict]:
    series = _call(base, f"/studies/{study_id}/series")
    return [s for s in series if s["MainDicomTags"].get("Modality") == "CT"]  # type: ignore[union-attr]


def run(orthanc: str, modality: str, age_y: float, seed: int, timeout_s: float) -> int:
    study_id = None
    for data in _fresh_pair(age_y, seed):
        answer = _call(orthanc, "/instances", data, "application/dicom")
        study_id = answer["ParentStudy"]  # type: ignore[index]
    print(f"pair stored in Orthanc: study {study_id}")
    _call(orthanc, f"/modalities/{modality}/store", json.dumps({"Resources": [study_id], "Synchronous": True}).encode())
    print(f"Orthanc sent the study to modality {modality!r} (PSCT)")
    deadline, last_count = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        for series in _ct_series(orthanc, str(study_id)):
            count = len(series["Instances"])
            if count == last_count and count > 0:  # two polls with the same count: the series is complete
                tags = series["MainDicomTags"]
                print(f"CT series back in Orthanc: {count} instances, {tags.get('SeriesDescription', '')!r}")
                return 0
            last_count = count
        time.sleep(POLL_S)
    print(f"no complete CT series in study {study_id} after {timeout_s:g} s: check PSCT_DESTINATIONS", file=sys.stderr)
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orthanc", default="http://127.0.0.1:8042", help="Orthanc's REST base URL")
    parser.add_argument("--modality", default="psct", help="PSCT's name among Orthanc's DicomModalities")
    parser.add_argument("--age", type=float, default=4.0, help="age of the simulated head, years")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the CT series")
    args = parser.parse_args()
    sys.exit(run(args.orthanc, args.modality, args.age, args.seed, args.timeout))


if __name__ == "__main__":
    main()
