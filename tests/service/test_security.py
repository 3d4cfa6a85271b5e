"""Issue 7 security items not covered elsewhere: path-like UIDs never reach the file system, the
queue accepts JSON only, and the worker refuses a model whose sha256 is not its sidecar's."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import dumps, loads
from pydicom import dcmread

from service.dicom_status import StoreStatus
from service.queue import celery_app
from service.settings import PHYSICS_BASELINE
from tests.conftest import PairFiles
from tests.service.test_listener import Running, store_status
from worker.runtime import ModelFileError, cached


@pytest.mark.parametrize("uid", ["../../etc", "1.2.3/../../x", "1.2.3\x00.4"])
def test_path_like_or_invalid_uids_are_refused_and_nothing_is_written(
    uid: str, psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, pair_files: PairFiles
) -> None:
    home = Path(psct_env["PSCT_HOME"])
    for keyword in ("StudyInstanceUID", "SOPInstanceUID"):
        scp = Running(monkeypatch, psct_env).start()
        try:
            ds = copy.deepcopy(dcmread(pair_files.pa))
            setattr(ds, keyword, uid)
            assert store_status(scp.port, ds) == StoreStatus.CANNOT_UNDERSTAND
        finally:
            scp.stop()
    assert not [p for p in home.parent.rglob("*.dcm") if home not in p.parents]  # nothing outside PSCT_HOME
    assert not list((home / "inbox").rglob("*"))


def test_the_queue_refuses_pickled_messages(psct_env: dict[str, str]) -> None:
    conf = celery_app().conf
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    content_type, encoding, body = dumps({"job": "x"}, serializer="pickle")
    with pytest.raises(ContentDisallowed):  # kombu's own check, with the accept list the workers use
        loads(body, content_type, encoding, accept=conf.accept_content)


def test_a_tampered_model_file_is_never_loaded(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(PHYSICS_BASELINE.read_bytes()[:-1] + b"\x00")  # one byte changed
    fake.with_suffix(".json").write_text(PHYSICS_BASELINE.with_suffix(".json").read_text())
    with pytest.raises(ModelFileError, match="sha256"):
        cached(fake)
