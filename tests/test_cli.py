"""The `psct` command line: refusals before binding, and the offline commands."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from pydicom import dcmread

from tests.conftest import PSCT, REPO, dciodvfy_errors


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PSCT_")}
    return subprocess.run(
        [*PSCT, *args], cwd=REPO, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=120, check=False
    )


def test_binding_rest_off_loopback_without_api_keys_is_refused(tmp_path: Path) -> None:
    for command in ("serve", "gateway"):
        result = run(command, "--home", str(tmp_path), "--http-host", "0.0.0.0")
        assert result.returncode != 0 and "PSCT_API_KEYS" in result.stderr


def test_a_malformed_destination_is_refused_before_starting(tmp_path: Path) -> None:
    result = run("gateway", "--home", str(tmp_path), env={"PSCT_DESTINATIONS": "PACS@nowhere"})
    assert result.returncode != 0 and "AE@host:port" in result.stderr


def test_simulate_then_reconstruct_offline(tmp_path: Path) -> None:
    result = run("simulate", "--age", "2", "--condition", "sagittal", "--seed", "4", "--kvp", "70",
                 "--omit-geometry", "-o", str(tmp_path / "pair"), "--preview", str(tmp_path / "sheet.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    truth = np.load(tmp_path / "pair" / "truth.npz")
    assert truth["hu"].shape == truth["labels"].shape == (160, 160, 160) and truth["hu"].max() > 800
    assert str(truth["condition"]) == "sagittal" and (tmp_path / "sheet.png").stat().st_size > 10_000
    pa = dcmread(tmp_path / "pair" / "pa.dcm")
    assert pa.KVP == "70" and "DistanceSourceToDetector" not in pa
    truth_slices = sorted((tmp_path / "pair" / "truth-ct").glob("*.dcm"))
    middle = dcmread(truth_slices[80])
    assert len(truth_slices) == 160 and dciodvfy_errors(truth_slices[80]) == []
    assert middle.StudyInstanceUID == pa.StudyInstanceUID and "ground truth" in middle.SeriesDescription
    np.testing.assert_array_equal(middle.pixel_array, np.clip(truth["hu"][80], -1024, 3071))
    result = run(
        "reconstruct",
        str(tmp_path / "pair" / "pa.dcm"),
        str(tmp_path / "pair" / "lateral.dcm"),
        "-o",
        str(tmp_path / "ct"),
        "--preview",
        str(tmp_path / "preview.png"),
    )
    assert result.returncode == 0, result.stderr
    slices = sorted((tmp_path / "ct").glob("*.dcm"))
    assert len(slices) == 160 and (tmp_path / "preview.png").stat().st_size > 1000
    assert dciodvfy_errors(slices[80]) == []
    assert "NOT FOR DIAGNOSTIC USE" in dcmread(slices[0]).SeriesDescription


def test_dataset_writes_pairs_and_a_manifest_and_resumes(tmp_path: Path) -> None:
    result = run("dataset", "-n", "2", "--truth-pool", "8", "--seed", "5", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "manifest-seed5.json").read_text())
    assert manifest["count"] == 2 and len(manifest["pairs"]) == 2 and "synthetic" in manifest["what"]
    pairs = sorted(tmp_path.glob("*.npz"))
    assert len(pairs) == 2 and np.load(pairs[0])["hu"].shape == (20, 20, 20)
    stamps = [p.stat().st_mtime_ns for p in pairs]
    assert run("dataset", "-n", "2", "--truth-pool", "8", "--seed", "5", "-o", str(tmp_path)).returncode == 0
    assert [p.stat().st_mtime_ns for p in pairs] == stamps  # a second run reads what is there


def test_train_names_a_bad_config_key(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"steps": 2, "learning_rat": 0.1}))
    result = run("train", "--config", str(tmp_path / "bad.json"), "-o", str(tmp_path / "run"))
    assert result.returncode == 2 and "learning_rat" in result.stderr


def test_simulate_refuses_an_unknown_condition(tmp_path: Path) -> None:
    result = run("simulate", "--age", "2", "--condition", "oxycephaly", "-o", str(tmp_path))
    assert result.returncode == 2 and "condition" in result.stderr


def test_reconstruct_names_a_bad_input(tmp_path: Path) -> None:
    (tmp_path / "junk.dcm").write_bytes(b"junk")
    result = run("reconstruct", str(tmp_path / "junk.dcm"), str(tmp_path / "junk.dcm"), "-o", str(tmp_path / "ct"))
    assert result.returncode == 2 and "error:" in result.stderr


def test_record_metrics_refuses_a_row_that_did_not_score_the_file(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"psct-net": {"standard": [{"psnr_db": 30.0}]}}))  # no sha256: unprovable
    sidecar = (REPO / "model/weights/psct-net.json").read_text()
    result = run("record-metrics", "model/weights/psct-net.onnx", "--metrics", f"{results}:psct-net")
    assert result.returncode == 2 and "records no model sha256" in result.stderr
    assert (REPO / "model/weights/psct-net.json").read_text() == sidecar


def test_an_impossible_default_room_stops_the_command_naming_the_setting(tmp_path: Path) -> None:
    env = {"PSCT_DEFAULT_SID_MM": "1000", "PSCT_DEFAULT_ISOCENTRE_TO_DETECTOR_MM": "990"}
    for args in (("serve", "--home", str(tmp_path)), ("reconstruct", "a.dcm", "b.dcm", "-o", str(tmp_path / "ct"))):
        result = run(*args, env=env)
        assert result.returncode == 2 and "PSCT_DEFAULT_ISOCENTRE_TO_DETECTOR_MM" in result.stderr, result.stderr
    assert not (tmp_path / "ct").exists()
