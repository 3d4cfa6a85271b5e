"""C-STORE of a finished series to one destination, with retries and exponential backoff."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.events import Event

from service import metrics
from service.dicom_status import SUCCESS_OR_WARNING, describe
from service.settings import Destination
from worker.ct_series import CT_IMAGE_STORAGE

log = logging.getLogger(__name__)

# Seconds to wait for the peer's answers; a PACS busy ingesting can be slow, a dead one should not
# hold a worker for long.
ACSE_TIMEOUT_S = 15
DIMSE_TIMEOUT_S = 60


def _no_delay(event: Event) -> None:
    """TCP_NODELAY on our end: without it each instance's last PDU waits for the peer's delayed ACK
    (Nagle), ~40-90 ms per instance on Linux; measured 57 -> 13 ms per CT slice to DCMTK storescp."""
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]


# Outcomes of one delivery attempt, the `outcome` label of psct_exports.
SENT, NO_ASSOCIATION, STORE_REFUSED, NETWORK_ERROR = "sent", "no_association", "store_refused", "network_error"


def send_once(paths: list[Path], destination: Destination, calling_ae: str,
              tls: ssl.SSLContext | None = None) -> tuple[str, str]:  # fmt: skip
    """(outcome, last status text) for one association carrying every instance."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = ACSE_TIMEOUT_S, DIMSE_TIMEOUT_S, DIMSE_TIMEOUT_S
    ae.add_requested_context(CT_IMAGE_STORAGE, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    tls_args = (tls, destination.host) if tls is not None else None
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args,
                         evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])  # fmt: skip
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "not established"
        return NO_ASSOCIATION, f"association {reason}"
    try:
        for path in paths:
            status = assoc.send_c_store(path)
            code = int(status.Status) if "Status" in status else None
            if code is None:
                return NETWORK_ERROR, "no C-STORE response (timeout or abort)"
            if code not in SUCCESS_OR_WARNING:
                return STORE_REFUSED, f"C-STORE status {describe(code)}"
        return SENT, describe(0)
    finally:
        if assoc.is_established:
            assoc.release()


def deliver(
    paths: list[Path],
    destination: Destination,
    calling_ae: str,
    attempts: int,
    backoff_s: float,
    on_attempt: Callable[[int, bool, str], None],
    tls: ssl.SSLContext | None = None,
) -> bool:
    """Try up to `attempts` times, sleeping backoff_s * 2**k between tries; report each attempt."""
    for attempt in range(1, attempts + 1):
        try:
            outcome, status = send_once(paths, destination, calling_ae, tls)
        except (OSError, RuntimeError) as exc:
            outcome, status = NETWORK_ERROR, f"{type(exc).__name__}: {exc}"
        metrics.EXPORTS.labels(str(destination), outcome).inc()
        ok = outcome == SENT
        on_attempt(attempt, ok, status)
        if ok:
            return True
        log.warning("delivery to %s failed (attempt %d/%d): %s", destination, attempt, attempts, status)
        if attempt < attempts:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    return False
