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

from troupe.config import DEFAULT_PATH, load_config, load_secrets
from troupe.replica import Replica, run_socket_mode

log = logging.getLogger("troupe")
CLOSE_WAIT = 5.0  # seconds to close the Slack connection on shutdown


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
def run(config_path: Path, name: str | None) -> None:
    """Run one replica: take commands from the Slack channel and deploy."""
    logging.getLogger().setLevel(logging.INFO)
    for noisy in ("slack_sdk", "slack_bolt"):  # their retries are ours to report, briefly
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = load_config(config_path)
    secrets = load_secrets(config.slack.delivery)
    replica = Replica(config, secrets, name or _hostname(), config_path.resolve().parent)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    close = _connect(replica, secrets.app_token.get_secret_value() if secrets.app_token else "")
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


def _connect(replica: Replica, app_token: str) -> Any:
    if replica.config.slack.delivery == "socket":
        return run_socket_mode(replica, app_token).close
    listener = replica.config.slack.http
    server: WSGIServer = make_server(
        listener.host, listener.port, SlackRequestHandler(replica.app), handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="troupe-http", daemon=True).start()
    log.info("events at http://%s:%s%s", listener.host, server.server_port, listener.path)
    return server.shutdown


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
