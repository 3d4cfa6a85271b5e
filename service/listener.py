"""DICOM listener (C-ECHO, C-STORE of CR/DX): every instance is on disk before we answer success.

Handlers are plain functions bound to pynetdicom events; pairing and queuing are delegated.
"""

from __future__ import annotations

import ipaddress
import logging
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any

from pydicom import uid
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from model.radiograph import RADIOGRAPH_SOP_CLASSES
from service import files, metrics
from service.dicom_status import StoreStatus
from service.errors import InputError
from service.intake import inspect
from service.pairing import Arrival, expire_half_pairs, register
from service.retention import RETENTION_SWEEP_S, purge
from service.settings import Settings
from service.store import ASSOCIATION, JobStore
from service.tls import listener_context

log = logging.getLogger(__name__)

# Everything pylibjpeg, -openjpeg and -rle decode (CONTRACT.md: uncompressed, JPEG baseline/lossless,
# JPEG 2000, RLE); JPEG-LS decodes through pylibjpeg-libjpeg too.
TRANSFER_SYNTAXES = [
    uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1,
    uid.JPEGLSLossless, uid.JPEGLSNearLossless, uid.JPEG2000Lossless, uid.JPEG2000, uid.RLELossless,
]  # fmt: skip
# ErrorComment (0000,0902) is LO: 64 characters at most.
ERROR_COMMENT_MAX = 64
# On stop, associations in progress get this long to finish their current request.
ASSOCIATION_FINISH_S = 5.0
# Associations served at once (a thread each; pynetdicom's default is 10). Beyond it a peer is
# rejected as transient (local limit exceeded) and retries, as PACS do.
MAX_ASSOCIATIONS = 32
# The pair-timeout sweep runs this often (and at least 4 times per timeout).
SWEEP_INTERVAL_S = 5.0


def _refusal(status: StoreStatus, message: str) -> Dataset:
    reply = Dataset()
    reply.Status = int(status)
    reply.ErrorComment = message[:ERROR_COMMENT_MAX]
    return reply


def on_store(event: Event, settings: Settings, store: JobStore, enqueue: Callable[[str], None]) -> Any:
    """Check, persist durably, record; only then acknowledge. Pairing may queue a job."""
    low = files.low_disk(settings.home, settings.min_free_mb)
    if low is not None:  # refuse before writing: the sender keeps the instance and retries later
        metrics.STORES.labels("out_of_resources").inc()
        log.warning("C-STORE refused: %s", low)
        return _refusal(StoreStatus.OUT_OF_RESOURCES, "disk full at PSCT: retry later")
    try:
        ds = event.dataset
        ds.file_meta = event.file_meta
        radiograph = inspect(ds, settings.room)
    except InputError as exc:
        metrics.STORES.labels("refused").inc()
        log.warning("C-STORE refused from %s: %s", event.assoc.requestor.ae_title, exc)
        return _refusal(StoreStatus.CANNOT_UNDERSTAND, str(exc))
    except Exception as exc:  # undecodable dataset
        metrics.STORES.labels("refused").inc()
        return _refusal(StoreStatus.CANNOT_UNDERSTAND, f"cannot decode dataset: {exc}")
    path = files.inbox_path(settings.home, radiograph.study_uid, radiograph.sop_uid)
    try:
        files.write_file(path, event.encoded_dataset())
        job_id = register(
            store,
            Arrival(
                sop_uid=radiograph.sop_uid,
                study_uid=radiograph.study_uid,
                family=radiograph.family,
                path=str(path.relative_to(settings.home)),
                calling_ae=event.assoc.requestor.ae_title,
            ),
            [str(d) for d in settings.destination_list],
        )
    except Exception:
        metrics.STORES.labels("failed").inc()
        log.exception("could not persist instance")
        return StoreStatus.OUT_OF_RESOURCES
    metrics.STORES.labels("stored").inc()
    if job_id is not None:
        try:
            enqueue(job_id)
        except Exception:  # committed: a worker's sweeper sends it later (worker/lease.py)
            log.exception("could not queue job %s; it stays queued in the store", job_id)
    return StoreStatus.SUCCESS


def _record_association(store: JobStore, outcome: str, reason: str, calling_ae: str | None, peer: str) -> None:
    """Count it and put it in the audit table; an audit write that fails never blocks the peer."""
    metrics.ASSOCIATIONS.labels(outcome, reason).inc()
    try:
        store.audit(ASSOCIATION, None, {"outcome": outcome, "reason": reason, "calling_ae": calling_ae, "peer": peer})
    except Exception:
        log.exception("audit of an association from %s failed", peer)


class AllowlistServer(ThreadedAssociationServer):
    """Refuses TCP connections from peers outside PSCT_ALLOWED_HOSTS before any association."""

    allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    store: JobStore | None = None

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if not self.allowed:
            return True
        try:
            address = ipaddress.ip_address(client_address[0])
        except ValueError:
            return False
        if any(address in network for network in self.allowed):
            return True
        log.warning("connection from %s refused: not in PSCT_ALLOWED_HOSTS", client_address[0])
        if self.store is not None:
            _record_association(self.store, "rejected", "host", None, str(client_address[0]))
        return False


def _on_accepted(event: Event, store: JobStore) -> None:
    requestor = event.assoc.requestor
    _record_association(store, "accepted", "", requestor.ae_title, str(requestor.address))


def _on_rejected(event: Event, settings: Settings, store: JobStore) -> None:
    requestor, allowed = event.assoc.requestor, settings.allowed_ae_list
    if allowed and requestor.ae_title not in allowed:
        reason = "ae_title"
    elif len(event.assoc.ae.active_associations) >= MAX_ASSOCIATIONS:
        reason = "busy"
    else:
        reason = "other"
    log.warning("association from %s (%s) refused: %s", requestor.ae_title, requestor.address, reason)
    _record_association(store, "rejected", reason, requestor.ae_title, str(requestor.address))


class Listener:
    def __init__(self, settings: Settings, store: JobStore, enqueue: Callable[[str], None]) -> None:
        self.settings, self.store, self.enqueue = settings, store, enqueue
        self.ae = AE(ae_title=settings.ae_title)
        for sop_class in RADIOGRAPH_SOP_CLASSES:
            self.ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)
        self.ae.require_calling_aet = settings.allowed_ae_list
        self.ae.maximum_associations = MAX_ASSOCIATIONS
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.server: ThreadedAssociationServer | None = None

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_C_STORE, on_store, [self.settings, self.store, self.enqueue]),
            (evt.EVT_ACCEPTED, _on_accepted, [self.store]),
            (evt.EVT_REJECTED, _on_rejected, [self.settings, self.store]),
        ]
        server_class = type(
            "Server", (AllowlistServer,), {"allowed": self.settings.allowed_networks, "store": self.store}
        )
        server = self.ae.make_server(
            (self.settings.dicom_host, self.settings.dicom_port),
            evt_handlers=handlers,
            server_class=server_class,
            ssl_context=listener_context(self.settings),
        )
        self.server = server
        self._threads = [
            threading.Thread(target=server.serve_forever, name="dicom-listener", daemon=True),
            threading.Thread(target=self._sweep, name="pair-timeout", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info(
            "DICOM listener %s on %s:%d", self.settings.ae_title, self.settings.dicom_host, self.settings.dicom_port
        )

    def _sweep(self) -> None:
        interval = min(SWEEP_INTERVAL_S, self.settings.pair_timeout_s / 4)
        last_purge = -RETENTION_SWEEP_S
        while True:
            try:
                for job_id in expire_half_pairs(self.store, self.settings.pair_timeout_s):
                    log.warning("job %s: pair timed out", job_id)
            except Exception:
                log.exception("pair-timeout sweep failed; retrying")
            if time.monotonic() - last_purge >= RETENTION_SWEEP_S:
                last_purge = time.monotonic()
                try:
                    purge(self.settings, self.store)
                except Exception:
                    log.exception("retention purge failed; retrying at the next sweep")
            if self._stop.wait(interval):
                return

    def stop(self) -> None:
        """Stop accepting; associations in progress finish their current request."""
        self._stop.set()
        if self.server is not None:
            # socketserver's own shutdown: pynetdicom's also unregisters the server from AE.start_server's
            # list, which a server made with make_server is not in.
            socketserver.BaseServer.shutdown(self.server)
            self.server.server_close()
        for assoc in self.ae.active_associations:
            assoc.join(timeout=ASSOCIATION_FINISH_S)
