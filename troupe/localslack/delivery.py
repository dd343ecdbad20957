"""Getting events and interactions to apps: Socket Mode, Events API over HTTP, and the log.

Both transports share one retry schedule (:class:`Timing`) and record every attempt
in a :class:`DeliveryLog` that the admin endpoint shows. Socket Mode hands each
envelope to exactly ONE open connection of the app (round robin), as Slack does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from troupe.localslack.events import event_callback
from troupe.localslack.workspace import App, Workspace

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Kind = Literal["events_api", "interactive"]
MAX_CONNECTIONS = 10  # per app, as on Slack
_background: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> None:
    """Run `coro` in the background, keeping a reference so it is not garbage-collected."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


@dataclass(frozen=True)
class Timing:
    """Delivery clocks. Slack's values are the defaults; tests shorten them."""

    ack_timeout: float = 3.0  # Socket Mode: an envelope not acked by then is retried
    http_timeout: float = 3.0  # Events API: a response slower than this is a failure
    retry_delays: tuple[float, ...] = (0.0, 60.0, 300.0)  # wait before retry 1, 2, 3
    connection_time: float = 3600.0  # Socket Mode: refresh (disconnect) after this long


@dataclass
class Attempt:
    n: int
    at: float
    target: str
    outcome: str = "sent"


@dataclass
class Delivery:
    id: str
    app_id: str
    kind: Kind
    label: str
    payload: JSON
    attempts: list[Attempt] = field(default_factory=list)
    state: Literal["pending", "delivered", "failed"] = "pending"

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "app_id": self.app_id,
            "type": self.kind,
            "label": self.label,
            "state": self.state,
            "event_id": self.payload.get("event_id"),
            "attempts": [a.__dict__ for a in self.attempts],
        }

    def next_retry_delay(self, timing: Timing) -> float | None:
        """Seconds before the next try, or None when this delivery has no tries left.
        Interactions are never retried: on Slack the person just sees an error."""
        retries_done = len(self.attempts) - 1
        if self.kind != "events_api" or retries_done >= len(timing.retry_delays):
            return None
        return timing.retry_delays[retries_done]


class DeliveryLog:
    def __init__(self, keep: int = 10_000) -> None:
        self._items: deque[Delivery] = deque(maxlen=keep)

    def add(self, delivery: Delivery) -> Delivery:
        self._items.append(delivery)
        return delivery

    def list(self, app_id: str | None = None) -> list[JSON]:
        return [d.to_json() for d in self._items if app_id in (None, d.app_id)]


def _label(kind: Kind, payload: JSON) -> str:
    if kind == "events_api":
        return str(payload["event"].get("subtype") or payload["event"]["type"])
    return str(payload.get("type", kind))


# ---- Socket Mode -----------------------------------------------------------------------------


@dataclass(eq=False)
class SocketConnection:
    app_id: str
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    opened: float = field(default_factory=time.time)


class SocketHub:
    """Socket Mode server side: tickets, connections, envelopes, acks and redelivery."""

    def __init__(self, timing: Timing, log_: DeliveryLog) -> None:
        self.timing = timing
        self.log = log_
        self.tickets: dict[str, str] = {}
        self.conns: dict[str, list[SocketConnection]] = {}
        self._turn: dict[str, itertools.count[int]] = {}
        self._waiting: dict[str, tuple[Delivery, asyncio.TimerHandle]] = {}

    def ticket(self, app_id: str) -> str:
        ticket = secrets.token_hex(16)
        self.tickets[ticket] = app_id
        return ticket

    def connected(self, app_id: str) -> int:
        return len(self.conns.get(app_id, []))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        app_id = self.tickets.pop(request.query.get("ticket", ""), None)
        if app_id is None:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        conn = SocketConnection(app_id, ws, request.transport)
        if self.connected(app_id) >= MAX_CONNECTIONS:
            await ws.send_json(_disconnect("too_many_websockets", app_id, self.connected(app_id)))
            await ws.close()
            return ws
        await self._serve(conn)
        return ws

    async def _serve(self, conn: SocketConnection) -> None:
        conns = self.conns.setdefault(conn.app_id, [])
        conns.append(conn)
        refresh = asyncio.get_running_loop().call_later(
            self.timing.connection_time, self._refresh, conn
        )
        try:
            await conn.ws.send_json(_hello(conn.app_id, len(conns), self.timing.connection_time))
            async for frame in conn.ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._on_text(conn, frame.data)
        finally:
            refresh.cancel()
            conns.remove(conn)

    def _on_text(self, conn: SocketConnection, data: str) -> None:
        frame: Any = None
        with contextlib.suppress(ValueError):
            frame = json.loads(data)
        if not isinstance(frame, dict):
            return  # not an ack; Slack ignores what it does not understand
        waiting = self._waiting.pop(str(frame.get("envelope_id")), None)
        if waiting is not None:
            delivery, timer = waiting
            timer.cancel()
            delivery.attempts[-1].outcome = "acked"
            delivery.state = "delivered"

    def _refresh(self, conn: SocketConnection) -> None:
        spawn(conn.ws.send_json(_disconnect("refresh_requested", conn.app_id, 0)))

    async def disconnect_all(self, reason: str = "refresh_requested") -> int:
        """Ask every client to reconnect (Slack's periodic refresh, or link_disabled)."""
        conns = [c for cs in self.conns.values() for c in cs]
        for conn in conns:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.send_json(_disconnect(reason, conn.app_id, 0))
        return len(conns)

    def drop_all(self) -> int:
        """Cut every connection at the TCP level, with no close frame: a network failure."""
        conns = [c for cs in self.conns.values() for c in cs]
        for conn in conns:
            if conn.transport is not None:
                conn.transport.abort()  # type: ignore[attr-defined]
        return len(conns)

    def deliver(self, app: App, kind: Kind, payload: JSON) -> Delivery:
        delivery = Delivery(str(uuid.uuid4()), app.id, kind, _label(kind, payload), payload)
        self._attempt(self.log.add(delivery), retry_reason="")
        return delivery

    def _attempt(self, delivery: Delivery, retry_reason: str) -> None:
        conn = self._pick(delivery.app_id)
        attempt = Attempt(len(delivery.attempts), time.time(), conn.id if conn else "")
        delivery.attempts.append(attempt)
        if conn is None:
            attempt.outcome = "no_connection"
            self._retry_later(delivery, "connection_failed")
            return
        envelope = _envelope(delivery, attempt.n, retry_reason)
        spawn(self._send(conn, envelope, attempt))
        timer = asyncio.get_running_loop().call_later(
            self.timing.ack_timeout, self._timed_out, delivery
        )
        self._waiting[delivery.id] = (delivery, timer)

    async def _send(self, conn: SocketConnection, envelope: JSON, attempt: Attempt) -> None:
        try:
            await conn.ws.send_str(json.dumps(envelope))
        except (ConnectionError, RuntimeError):
            attempt.outcome = "send_failed"  # the ack timer will retry it

    def _pick(self, app_id: str) -> SocketConnection | None:
        conns = [c for c in self.conns.get(app_id, []) if not c.ws.closed]
        if not conns:
            return None
        turn = next(self._turn.setdefault(app_id, itertools.count()))
        return conns[turn % len(conns)]

    def _timed_out(self, delivery: Delivery) -> None:
        self._waiting.pop(delivery.id, None)
        if delivery.attempts[-1].outcome == "sent":
            delivery.attempts[-1].outcome = "timeout"
        self._retry_later(delivery, "timeout")

    def _retry_later(self, delivery: Delivery, reason: str) -> None:
        delay = delivery.next_retry_delay(self.timing)
        if delay is None:
            delivery.state = "failed"
            return
        asyncio.get_running_loop().call_later(delay, self._attempt, delivery, reason)


def _envelope(delivery: Delivery, attempt: int, retry_reason: str) -> JSON:
    return {
        "envelope_id": delivery.id,
        "payload": delivery.payload,
        "type": delivery.kind,
        "accepts_response_payload": delivery.kind == "interactive",
        "retry_attempt": attempt,
        "retry_reason": retry_reason,
    }


def _hello(app_id: str, num_connections: int, connection_time: float) -> JSON:
    return {
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": "localslack",
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "build_number": 1,
            "approximate_connection_time": int(connection_time),
        },
        "connection_info": {"app_id": app_id},
    }


def _disconnect(reason: str, app_id: str, num_connections: int) -> JSON:
    return {
        "type": "disconnect",
        "reason": reason,
        "num_connections": num_connections,
        "debug_info": {"host": "localslack"},
        "connection_info": {"app_id": app_id},
    }


# ---- Events API over HTTP ----------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class HttpSender:
    """POSTs signed events and interactions to an app's Request URL, with Slack's retries."""

    def __init__(self, timing: Timing, log_: DeliveryLog) -> None:
        self.timing = timing
        self.log = log_
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def deliver(self, app: App, kind: Kind, payload: JSON) -> Delivery:
        event_id = str(payload.get("event_id") or uuid.uuid4())
        delivery = Delivery(event_id, app.id, kind, _label(kind, payload), payload)
        spawn(self._run(app, self.log.add(delivery)))
        return delivery

    async def _run(self, app: App, delivery: Delivery) -> None:
        reason = ""
        while True:
            reason, no_retry = await self._post(app, delivery, reason)
            if reason == "":
                delivery.state = "delivered"
                return
            delay = None if no_retry else delivery.next_retry_delay(self.timing)
            if delay is None:
                delivery.state = "failed"
                return
            await asyncio.sleep(delay)

    async def _post(self, app: App, delivery: Delivery, retry_reason: str) -> tuple[str, bool]:
        """One attempt; returns ("", _) on success, else (Slack's retry reason, no_retry)."""
        url = app.http_url or ""
        attempt = Attempt(len(delivery.attempts), time.time(), url)
        delivery.attempts.append(attempt)
        body, ctype = _body(delivery)
        headers = self._headers(app, body, ctype, attempt.n, retry_reason)
        timeout = aiohttp.ClientTimeout(total=self.timing.http_timeout)
        try:
            async with self._client().post(
                url, data=body, headers=headers, timeout=timeout, max_redirects=2
            ) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
                attempt.outcome = "ok" if ok else f"http_{resp.status}"
                return ("" if ok else "http_error"), resp.headers.get("x-slack-no-retry") == "1"
        except TimeoutError:
            attempt.outcome = "http_timeout"
            return "http_timeout", False
        except aiohttp.TooManyRedirects:
            attempt.outcome = "too_many_redirects"
            return "too_many_redirects", False
        except aiohttp.ClientError:
            attempt.outcome = "connection_failed"
            return "connection_failed", False

    @staticmethod
    def _headers(app: App, body: bytes, ctype: str, n: int, reason: str) -> dict[str, str]:
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": ctype,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(app.signing_secret, stamp, body),
        }
        if n:
            headers |= {"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": reason}
        return headers

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _body(delivery: Delivery) -> tuple[bytes, str]:
    if delivery.kind == "events_api":
        return json.dumps(delivery.payload).encode(), "application/json"
    form = urlencode({"payload": json.dumps(delivery.payload)}).encode()
    return form, "application/x-www-form-urlencoded"


# ---- fan-out -------------------------------------------------------------------------------------


class Publisher:
    """Routes each event to every app in the channel, by that app's delivery."""

    def __init__(self, workspace: Workspace, hub: SocketHub, http: HttpSender) -> None:
        self.workspace = workspace
        self.hub = hub
        self.http = http
        # Called with every event, whoever is in the channel: the web chat page's live
        # updates. A watcher must not block (it runs on the server's event loop).
        self.watchers: list[Callable[[JSON], None]] = []

    def event(self, members: set[str], event: JSON, only: set[str] | None = None) -> None:
        """Send `event` to the apps whose bot user is in `members` (and in `only`, if given)."""
        for watch in self.watchers:
            watch(event)
        event_id = "Ev" + secrets.token_hex(5).upper()
        now = time.time()
        for app in self.workspace.apps:
            if app.bot_user_id in members and (only is None or app.bot_user_id in only):
                self.send(
                    app, "events_api", event_callback(self.workspace, app, event, event_id, now)
                )

    def send(self, app: App, kind: Kind, payload: JSON) -> Delivery:
        transport = self.http if app.http_url else self.hub
        return transport.deliver(app, kind, payload)
