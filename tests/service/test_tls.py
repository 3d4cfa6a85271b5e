"""DICOM TLS (issue 7): the listener requires mutual TLS 1.2+ when given a certificate; export too.

Certificates come from the `openssl` command line: a test CA, a server and a client certificate for
127.0.0.1, and a second CA nobody trusts.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from service.dicom_status import StoreStatus
from service.errors import ConfigError
from service.settings import Destination, get_settings
from service.tls import export_context, listener_context
from tests.conftest import PairFiles, apply_env, free_port, require
from tests.service.test_listener import Running
from worker.ct_series import CT_IMAGE_STORAGE
from worker.delivery import SENT, send_once


def _openssl(*args: str) -> None:
    subprocess.run([require("openssl"), *args], check=True, capture_output=True)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "2", "-subj", f"/CN={name}")  # fmt: skip
    return cert, key


def _leaf(folder: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    key, request, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    extensions = folder / f"{name}.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-extfile", str(extensions))  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("pki")
    ca, stranger = _ca(folder, "psct-test-ca"), _ca(folder, "untrusted-ca")
    return {"ca": ca, "server": _leaf(folder, "server", ca), "client": _leaf(folder, "client", ca),
            "stranger": _leaf(folder, "stranger", stranger)}  # fmt: skip


def _client(pki: dict, who: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"][0]))
    if who is not None:
        context.load_cert_chain(*(str(p) for p in pki[who]))
    return context


def _tls_env(pki: dict) -> dict[str, str]:
    return {"PSCT_TLS_CERT": str(pki["server"][0]), "PSCT_TLS_KEY": str(pki["server"][1]),
            "PSCT_TLS_CA": str(pki["ca"][0])}  # fmt: skip


def _echo(port: int, tls: ssl.SSLContext | None) -> bool:
    ae = AE(ae_title="TLSSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="PSCT", tls_args=(tls, "127.0.0.1") if tls else None)
    if not assoc.is_established:
        return False
    ok = int(assoc.send_c_echo().Status) == 0
    assoc.release()
    return ok


def test_the_listener_takes_only_mutual_tls_from_our_ca(
    pki: dict, psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, pair_files: PairFiles
) -> None:
    scp = Running(monkeypatch, psct_env).start(**_tls_env(pki))
    try:
        assert _echo(scp.port, _client(pki, "client"))
        ae = AE(ae_title="TLSSCU")
        ds = dcmread(pair_files.pa)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="PSCT", tls_args=(_client(pki, "client"), "127.0.0.1"))
        assert int(assoc.send_c_store(ds).Status) == StoreStatus.SUCCESS
        assoc.release()
        assert not _echo(scp.port, None)  # in the clear
        assert not _echo(scp.port, _client(pki, None))  # TLS without a client certificate
        assert not _echo(scp.port, _client(pki, "stranger"))  # a certificate from another CA
        old = _client(pki, "client")
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        assert not _echo(scp.port, old)  # below TLS 1.2
    finally:
        scp.stop()


def test_half_a_tls_configuration_is_refused_naming_what_is_missing(
    pki: dict, psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env({"PSCT_TLS_CERT": str(pki["server"][0]), "PSCT_TLS_KEY": str(pki["server"][1])}, monkeypatch)
    with pytest.raises(ConfigError, match="PSCT_TLS_CA"):
        listener_context(get_settings())


def _tls_receiver(pki: dict, port: int, received: list) -> AE:
    """A CT store SCP behind mutual TLS (pynetdicom), standing in for a PACS that requires it."""
    ae = AE(ae_title="TLSPACS")
    ae.add_supported_context(CT_IMAGE_STORAGE)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"][0]))
    context.load_cert_chain(*(str(p) for p in pki["server"]))
    context.verify_mode = ssl.CERT_REQUIRED

    def stored(event) -> int:  # type: ignore[no-untyped-def]
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    ae.start_server(("127.0.0.1", port), block=False, ssl_context=context, evt_handlers=[(evt.EVT_C_STORE, stored)])
    return ae


def test_export_over_tls_reaches_a_pacs_that_requires_it(
    pki: dict, psct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port, received = free_port(), []
    receiver = _tls_receiver(pki, port, received)
    try:
        ct = tmp_path / "ct.dcm"
        _one_ct_instance(ct)
        destination = Destination(f"TLSPACS@127.0.0.1:{port}")
        apply_env({**_tls_env(pki), "PSCT_TLS_CERT": str(pki["client"][0]), "PSCT_TLS_KEY": str(pki["client"][1]),
                   "PSCT_TLS_EXPORT": "1"}, monkeypatch)  # fmt: skip
        outcome, status = send_once([ct], destination, "PSCT", export_context(get_settings()))
        assert outcome == SENT, status
        assert len(received) == 1
        outcome, _ = send_once([ct], destination, "PSCT", None)  # in the clear: refused by the PACS
        assert outcome != SENT and len(received) == 1
    finally:
        receiver.shutdown()


def _one_ct_instance(path: Path) -> None:
    """One classic CT instance (the worker's own writer, on a tiny volume)."""
    from datetime import UTC, datetime

    import numpy as np

    from model.simulate import simulate_pair
    from worker.ct_series import ct_series

    pair = simulate_pair(age_y=2.0, seed=5)
    volume = np.zeros((2, 8, 8), dtype=np.float32)
    sidecar = {"name": "test", "version": "0", "kind": "psct-net"}
    ct_series(volume, 1.5, pair.pa, pair.lateral, "b" * 32, sidecar, datetime.now(UTC))[0].save_as(
        path, enforce_file_format=True
    )
