"""Small waiting and collecting helpers for tests against real servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

T = TypeVar("T")


def poll(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.25,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call `predicate` until it returns something truthy; fail after `timeout` seconds
    with `what` and, if given, `explain()` (the state that was still wrong)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; fail the test with `what` after `timeout` seconds."""
    return poll(predicate, timeout, what, interval=0.02)


class Inbox:
    """A real SocketModeClient that records every envelope it receives (and acks or not)."""

    def __init__(
        self, api_url: str, app_token: str, bot_token: str, ack: bool = True, ping: float = 1.0
    ) -> None:
        self.requests: list[SocketModeRequest] = []
        self.ack = ack
        self._lock = threading.Lock()
        web = WebClient(token=bot_token, base_url=api_url)
        # A short ping interval makes the client notice dropped sockets (and close) quickly.
        self.client = SocketModeClient(app_token=app_token, web_client=web, ping_interval=ping)
        self.client.socket_mode_request_listeners.append(self._on_request)

    def _on_request(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        with self._lock:
            self.requests.append(req)
        if self.ack:
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    def connect(self) -> Inbox:
        self.client.connect()
        return self

    def close(self) -> None:
        self.client.close()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            payloads = [r.payload for r in self.requests if r.type == "events_api"]
        return [p["event"] for p in payloads if kind in (None, p["event"]["type"])]

    def texts(self) -> list[str]:
        return [e.get("text", "") for e in self.events("message")]
