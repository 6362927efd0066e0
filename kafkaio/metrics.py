"""The one metrics interface: every long-running process exposes a prometheus_client registry and a health
check over HTTP through :func:`serve`."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Health = Callable[[], tuple[bool, dict[str, Any]]]


def serve(
    registry: CollectorRegistry, health: Health, host: str, port: int, name: str = "metrics"
) -> ThreadingHTTPServer:
    """Serve /metrics (Prometheus text exposition of ``registry``) and /healthz (JSON; 200 when healthy,
    503 otherwise) from a daemon thread; ``shutdown()`` the returned server to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, status, kind = generate_latest(registry), 200, CONTENT_TYPE_LATEST
            elif self.path.startswith("/healthz"):
                ok, detail = health()
                body, status, kind = json.dumps(detail).encode(), 200 if ok else 503, "application/json"
            else:
                body, status, kind = b"not found", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name=f"{name}-http", daemon=True).start()
    return server
