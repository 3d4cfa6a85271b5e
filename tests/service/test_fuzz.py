"""Bad input (issue 7): a seeded mutation fuzzer over valid PA and lateral instances.

Through the reading path (parse, intake checks, decoding and geometry as the worker does them):
zero crashes, each refusal a message naming the problem. A sample goes through the real REST gateway
(never a 5xx) and the real DICOM listener (a status for every C-STORE, a comment on every refusal,
the listener still answering). `make test` runs 400 cases; the full sweep of 10,000 is
`.venv/bin/pytest -m sweep tests/service/test_fuzz.py` (docs/reliability.md).
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pynetdicom import AE

from model.dx_writer import study_for_seed
from model.errors import ModelInputError
from model.grid import OUTPUT_SHAPE, VOXEL_MM
from model.preprocess import view_input
from model.simulator import simulate_radiographs
from model.skull import parameters, phantom
from service.api import create_app
from service.errors import InputError
from service.intake import inspect, parse
from tests.conftest import PairFiles
from tests.service.mutations import mutate
from tests.service.test_listener import Running, echoscu

SWEEP_CASES = pytest.param(10_000, marks=pytest.mark.sweep, id="10000")
SAMPLE = 30  # mutated files sent through each of REST and DICOM
SEED = 20261125


@pytest.fixture(scope="module")
def originals(pair_files: PairFiles) -> list[bytes]:
    """Valid instances of every object type the contract accepts: DX (both views), CR, DX for processing."""
    files = [pair_files.pa.read_bytes(), pair_files.lateral.read_bytes()]
    head = phantom(parameters(6.0, "normal", seed=3), OUTPUT_SHAPE, VOXEL_MM)
    for storage in ("CR", "DX-processing"):
        pa, lateral = simulate_radiographs(head.hu, VOXEL_MM, study_for_seed(3), 3, storage=storage, bulk=True)
        for view in (pa, lateral):
            buffer = io.BytesIO()
            view.dataset.save_as(buffer, enforce_file_format=True)
            files.append(buffer.getvalue())
    return files


def read_path(data: bytes) -> str | None:
    """None when the file is accepted and decodes to network input; else the refusal's message.
    Any other exception is a crash and fails the test."""
    try:
        ds = parse(data, "file")
        radiograph = inspect(ds)
        view_input(ds, radiograph.family)
    except (InputError, ModelInputError) as exc:
        return str(exc)
    return None


def test_the_originals_are_accepted(originals: list[bytes]) -> None:
    """The fuzzer starts from valid input: otherwise every case would only test one refusal."""
    assert [read_path(data) for data in originals] == [None] * len(originals)


@pytest.mark.parametrize("cases", [400, SWEEP_CASES])
def test_mutated_files_never_crash_the_reading_path(originals: list[bytes], cases: int) -> None:
    # The originals stay out of hypothesis's arguments: a failure report prints the case, not 4 MB.
    @settings(max_examples=cases, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(index=st.integers(min_value=0, max_value=len(originals) - 1), rnd=st.randoms(use_true_random=False))
    def case(index: int, rnd: random.Random) -> None:
        refusal = read_path(mutate(originals[index], rnd))
        if refusal is not None:  # a refusal names what is wrong, in words
            assert len(refusal) >= 12 and any(c.isalpha() for c in refusal), refusal

    case()


def _samples(originals: list[bytes], count: int) -> Iterator[bytes]:
    rnd = random.Random(SEED)
    for _ in range(count):
        yield mutate(originals[rnd.randrange(len(originals))], rnd)


def test_mutated_uploads_get_202_or_a_4xx_naming_the_problem(psct_env: dict[str, str], originals: list[bytes]) -> None:
    client = TestClient(create_app(), raise_server_exceptions=False)
    lateral = originals[1]
    for data in _samples(originals, SAMPLE):
        answer = client.post("/reconstructions", files={"pa": ("pa.dcm", data), "lateral": ("lat.dcm", lateral)})
        assert answer.status_code == 202 or (400 <= answer.status_code < 500 and answer.json()["detail"]), (
            answer.status_code,
            answer.text,
        )


def test_mutated_instances_get_a_status_and_the_listener_goes_on(
    psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, originals: list[bytes], tmp_path: Path
) -> None:
    scp = Running(monkeypatch, psct_env).start()
    ae = AE(ae_title="FUZZSCU")
    sent = 0
    try:
        for data in _samples(originals, SAMPLE):
            try:
                ds = dcmread(io.BytesIO(data))
                context = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
            except Exception:  # a sender cannot even read it: nothing a PACS would send
                continue
            ae.requested_contexts = []
            ae.add_requested_context(*context)
            assoc = ae.associate("127.0.0.1", scp.port, ae_title="PSCT")
            if not assoc.is_established:  # e.g. a mutated SOP class UID we do not accept: refused there
                continue
            try:
                reply = assoc.send_c_store(ds)
            except Exception:  # the sender's own encoder refuses the value
                assoc.abort()
                continue
            assoc.release()
            if "Status" not in reply:  # our SCU could not send it (not the listener's answer)
                continue
            sent += 1
            if reply.Status != 0x0000:
                assert reply.get("ErrorComment"), hex(reply.Status)
        assert sent >= SAMPLE // 3, sent  # enough of the sample reached the listener to mean something
        assert echoscu(scp.port) == 0  # still answering
    finally:
        scp.stop()
