"""A listener's or worker's own small HTTP endpoint: /metrics (Prometheus), /healthz, /readyz.

The gateway serves these through FastAPI; a separate `psct scp` or `psct worker` has no web server,
so it serves them here, on PSCT_METRICS_PORT, for Prometheus and the orchestrator's health checks.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from service import metrics

log = logging.getLogger(__name__)
Checks = Callable[[], dict[str, str]]


def serve(host: str, port: int, checks: Checks) -> ThreadingHTTPServer | None:
    """Start serving in a daemon thread; None (logged) when the port cannot be bound, because a
    busy metrics port must not stop reconstructions: the orchestrator's health check then fails."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/metrics":
                self._answer(200, metrics.render(), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                self._answer(200, b'{"status": "ok"}', "application/json")
            elif self.path == "/readyz":
                results = checks()
                ready = all(value == "ok" for value in results.values())
                body = json.dumps({"ready": ready, "checks": results}).encode()
                self._answer(200 if ready else 503, body, "application/json")
            else:
                self._answer(404, b'{"detail": "not found: /metrics, /healthz or /readyz"}', "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - scrapes are not news
            pass

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        log.error("metrics and health endpoint not served: cannot bind %s:%d (%s); set PSCT_METRICS_PORT", host,
                  port, exc)  # fmt: skip
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info("metrics and health on http://%s:%d/metrics", host, port)
    return server
