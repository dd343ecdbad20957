"""`troupe run`: one replica as a process (loaded only when used: it imports bolt).

Socket Mode by default; HTTP delivery serves bolt's WSGI adapter on the configured
address (127.0.0.1 unless told otherwise), where bolt verifies every signature.
SIGTERM or Ctrl-C: stop claiming, let the running step finish, hand the claim over.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import click
from slack_bolt.adapter.wsgi import SlackRequestHandler

from troupe import __version__, metrics, version
from troupe.config import DEFAULT_PATH, load_config, load_secrets, with_health_port
from troupe.errors import InputError
from troupe.health import HealthServer, Vitals
from troupe.replica import Replica, run_socket_mode

log = logging.getLogger("troupe")
CLOSE_WAIT = 5.0  # seconds to close the Slack connection on shutdown
PONG_STALE = 3  # ping intervals without a pong: the Socket Mode connection is down


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


@click.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_PATH,
    show_default=True,
)
@click.option("--replica", "name", default=None, help="This replica's name (default: host name).")
@click.option(
    "--health-port",
    type=int,
    default=None,
    help="Serve /healthz and /metrics on this port (default: health.port; 0: a free port).",
)
@click.option(
    "--no-supervisor",
    is_flag=True,
    help="Run the replica in this process: no restarts, no self-update (docs/self-update.md).",
)
def run(config_path: Path, name: str | None, health_port: int | None, no_supervisor: bool) -> None:
    """Run one replica: take commands from the Slack channel and deploy."""
    logging.getLogger().setLevel(logging.INFO)
    for noisy in ("slack_sdk", "slack_bolt"):  # their retries are ours to report, briefly
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = load_config(config_path)
    if health_port is not None:
        config = with_health_port(config, health_port)
    secrets = load_secrets(config.slack.delivery)
    if not no_supervisor:  # the replica runs as our child, restarted and updated on probation
        from troupe.supervisor import setup_for, supervise  # noqa: PLC0415 - only when used

        sys.exit(supervise(setup_for(config, config_path, name or _hostname(), health_port)))
    replica = Replica(config, secrets, name or _hostname(), config_path.resolve().parent)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    # Listening before connecting: a port in use is reported at once, and /healthz says
    # "not connected" (503) until the event delivery is up.
    delivery: list[Callable[[], bool]] = []
    _serve_health(replica, lambda: bool(delivery) and delivery[0]())
    close, connected = _connect(
        replica, secrets.app_token.get_secret_value() if secrets.app_token else ""
    )
    delivery.append(connected)
    replica.start()
    log.info(
        "%s ready in %s (fleet: %s)", replica.name, config.slack.channel, sorted(replica.fleet)
    )
    stop.wait()
    log.info("%s stopping: no new claims; the running step finishes, then hand-over", replica.name)
    replica.stop()
    _wait_idle(replica, timeout=config.slack.lease.seconds)
    _close_within(close, CLOSE_WAIT)
    log.info("%s stopped", replica.name)
    logging.shutdown()
    sys.stdout.flush()
    # The claim is handed over and nothing runs: do not wait for slack_sdk's reconnect
    # threads, which keep retrying for a minute when Slack is unreachable.
    os._exit(0)


def _connect(replica: Replica, app_token: str) -> tuple[Callable[[], object], Callable[[], bool]]:
    """Open the event delivery; returns how to close it and how to tell it is up."""
    if replica.config.slack.delivery == "socket":
        handler = run_socket_mode(replica, app_token)
        return handler.close, lambda: _socket_alive(handler.client)
    listener = replica.config.slack.http
    try:
        server: WSGIServer = make_server(
            listener.host,
            listener.port,
            SlackRequestHandler(replica.app),
            handler_class=_QuietHandler,
        )
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise InputError(f"cannot listen on {listener.host}:{listener.port}: {exc}") from exc
    thread = threading.Thread(target=server.serve_forever, name="troupe-http", daemon=True)
    thread.start()
    log.info("events at http://%s:%s%s", listener.host, server.server_port, listener.path)
    return server.shutdown, thread.is_alive


def _socket_alive(client: Any) -> bool:
    """Connected, and Slack answered a ping lately: slack_sdk keeps a dead socket open
    for 20 s or more before it notices, and /healthz should say so sooner."""
    session = client.current_session
    if session is None or not session.is_active():
        return False
    last_pong = session.last_ping_pong_time  # None until the first pong
    return last_pong is None or time.time() - last_pong < PONG_STALE * client.ping_interval


def _serve_health(replica: Replica, connected: Callable[[], bool]) -> HealthServer:
    """/healthz and /metrics (troupe.health); the address is logged, the port may be 0."""
    settings = replica.config.health

    def vitals() -> Vitals:
        return Vitals(
            replica.name,
            version.current().label,  # the commit too: what self-update changes
            connected(),
            replica.alive_at,
            replica.config.slack.sweep_interval,
        )

    metrics.BUILD_INFO.labels(__version__, replica.name).set(1)
    server = HealthServer(settings.host, settings.port, vitals, time.time).start()
    log.info("health at %s/healthz, metrics at %s/metrics", server.url, server.url)
    return server


def _close_within(close: Callable[[], object], seconds: float) -> None:
    closer = threading.Thread(target=close, name="troupe-close", daemon=True)
    closer.start()
    closer.join(seconds)


def _wait_idle(replica: Replica, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while replica.busy_with is not None and time.monotonic() < deadline:
        time.sleep(0.1)


def _hostname() -> str:
    return socket.gethostname().split(".")[0].lower()
