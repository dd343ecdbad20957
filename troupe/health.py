"""Edge: the replica's health endpoint and Prometheus metrics, over plain HTTP.

- `GET /healthz`: 200 and `{"status": "ok", "replica", "version", "connected",
  "alive_age"}` while the replica is connected to Slack and its sweeper loop ran
  recently (within `3 * sweep_interval + 5` seconds); otherwise 503 with the same
  fields, `"status": "unhealthy"` and a `reason`. The Docker HEALTHCHECK, systemd
  watchers and the supervisor read it.
- `GET /metrics`: troupe.metrics in the Prometheus text format.

Binds 127.0.0.1 unless told otherwise: it tells nothing secret, but nothing outside the
machine needs it unless an operator says so. `judge` is the pure part.
`python -m troupe.health [URL]` probes it (exit 0 when healthy): the Docker HEALTHCHECK.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from troupe import metrics
from troupe.errors import TroupeError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8390  # what the Dockerfile, compose and the systemd units use
STALL_GRACE = 5.0  # seconds on top of three sweep intervals before a quiet loop is stalled


class HealthServerError(TroupeError):
    """The health endpoint could not listen (port in use, address not on this machine)."""


@dataclass(frozen=True)
class Vitals:
    """What the replica reports about itself at one moment."""

    replica: str
    version: str
    connected: bool
    alive_at: float  # epoch seconds of the sweeper loop's last pass
    sweep_interval: float


def judge(vitals: Vitals, now: float) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of /healthz (pure)."""
    age = max(0.0, now - vitals.alive_at)
    body: dict[str, Any] = {
        "status": "ok",
        "replica": vitals.replica,
        "version": vitals.version,
        "connected": vitals.connected,
        "alive_age": round(age, 3),
    }
    reasons = []
    if not vitals.connected:
        reasons.append("not connected to Slack")
    limit = 3 * vitals.sweep_interval + STALL_GRACE
    if age >= limit:
        reasons.append(f"the sweeper loop has not run for {age:.0f}s (limit {limit:.0f}s)")
    if not reasons:
        return 200, body
    return 503, body | {"status": "unhealthy", "reason": "; ".join(reasons)}


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            status, body = judge(self.server.vitals(), self.server.clock())
            self._send(status, "application/json", json.dumps(body).encode())
        elif path == "/metrics":
            self._send(200, metrics.CONTENT_TYPE, metrics.exposition())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health: " + format, *args)


class HealthServer(ThreadingHTTPServer):
    """Serves /healthz and /metrics on a daemon thread; `port` 0 picks a free one."""

    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        vitals: Callable[[], Vitals],
        clock: Callable[[], float],
    ) -> None:
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            where = f"{host}:{port}"
            raise HealthServerError(
                f"cannot serve health checks on {where}: {exc.strerror}"
            ) from exc
        self.host = host
        self.vitals = vitals
        self.clock = clock
        self._thread = threading.Thread(
            target=self.serve_forever, name="troupe-health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def probe(url: str, timeout: float = 4.0) -> int:
    """Exit status for a container HEALTHCHECK: 0 if `url` answers 200, else 1 (with why)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            print(response.read().decode(errors="replace"))
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{url}: HTTP {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # python -m troupe.health [URL]: the image's HEALTHCHECK
    sys.exit(
        probe(sys.argv[1] if len(sys.argv) > 1 else f"http://127.0.0.1:{DEFAULT_PORT}/healthz")
    )
