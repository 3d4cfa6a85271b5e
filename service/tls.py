"""DICOM TLS (PS3.15 B.1, TLS 1.2 or later): contexts for the listener and for export, mutual.

One certificate and key identify this AE both ways; peers' certificates must chain to PSCT_TLS_CA.
"""

from __future__ import annotations

import ssl

from service.errors import ConfigError
from service.settings import Settings


def _context(settings: Settings, purpose: ssl.Purpose) -> ssl.SSLContext:
    missing = [n for n, v in (("PSCT_TLS_CERT", settings.tls_cert), ("PSCT_TLS_KEY", settings.tls_key),
                              ("PSCT_TLS_CA", settings.tls_ca)) if v is None]  # fmt: skip
    if missing:
        raise ConfigError(f"DICOM TLS needs {', '.join(missing)} too (certificate, key and the peers' CA)")
    try:
        context = ssl.create_default_context(purpose, cafile=str(settings.tls_ca))
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"DICOM TLS files unusable: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED  # mutual: a peer without a certificate from our CA is refused
    return context


def listener_context(settings: Settings) -> ssl.SSLContext | None:
    """The listener's TLS context, or None when it listens in the clear (no PSCT_TLS_CERT)."""
    return _context(settings, ssl.Purpose.CLIENT_AUTH) if settings.tls_cert or settings.tls_key else None


def export_context(settings: Settings) -> ssl.SSLContext | None:
    """The context for C-STORE to destinations (PSCT_TLS_EXPORT), checking their host names."""
    return _context(settings, ssl.Purpose.SERVER_AUTH) if settings.tls_export else None
