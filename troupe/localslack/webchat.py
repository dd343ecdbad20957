"""The web chat page: people read and write the workspace in a browser (aiohttp routes).

Routes::

    GET /                    the page (static/index.html; script and style from /static/)
    GET /static/{name}       app.js, style.css
    GET /web/workspace       team, people (with their user tokens), bots, channels
    GET /web/channel?channel=C…   the newest 300 messages of a channel with their threads,
                             and its pins
    GET /web/fleet           apps (open Socket Mode connections), replicas (roll call
                             answers: version, idle/busy) and claims (pinned commands and
                             the claim records in their threads)
    GET /web/stream          Server-Sent Events: one `data: {...}` line per workspace event

The page writes through localslack's own Web API with the chosen person's token
(`chat.postMessage`, `reactions.add`, `localslack.click`), exactly as a Slack client
would. Handing people's tokens to the page is acceptable only because localslack is a
dev server bound to 127.0.0.1 (docs/localslack.md says so). Text from chat reaches the
browser as JSON and is put into the page as text nodes, never as HTML; the page's
Content-Security-Policy forbids inline script as a second line of defence.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from troupe import report
from troupe.claims import CLAIM_RECORD
from troupe.localslack.store import JSON, ChannelState, Message

if TYPE_CHECKING:
    from troupe.localslack.server import LocalSlack

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
KEEPALIVE_SECONDS = 15.0
PAGE_MESSAGES = 300  # top-level messages the page shows (with their threads)
QUEUE_SIZE = 1000  # events a slow page may lag behind before it is told to reload all
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# The records Troupe's replicas write (troupe/report.py and troupe/claims.py own the text).


# ---- what the side panel shows (pure) ------------------------------------------------------


@dataclass(frozen=True)
class ClaimRecord:
    replica: str
    generation: int
    until: str  # as written: an ISO time in UTC
    ts: str  # the record's ts (the first record of the newest generation wins)


def claim_records(texts: list[tuple[str, str]]) -> list[ClaimRecord]:
    """Claim records among (ts, text) replies, in thread order."""
    out = []
    for ts, text in texts:
        if match := CLAIM_RECORD.match(text):  # Troupe's own parser of its records
            out.append(ClaimRecord(match["replica"], int(match["gen"]), match["until"], ts))
    return out


def owner(records: list[ClaimRecord]) -> ClaimRecord | None:
    """The holder: the earliest record of the newest generation (Troupe's tie-break)."""
    if not records:
        return None
    newest = max(r.generation for r in records)
    return min((r for r in records if r.generation == newest), key=lambda r: r.ts)


def lease_left(until: str, now: float) -> float | None:
    """Seconds until `until` (negative once it lapsed); None if it is not a time."""
    try:
        stamp = datetime.fromisoformat(until.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp() - now


def recent(state: ChannelState, limit: int) -> tuple[list[Message], int]:
    """The newest `limit` top-level messages with their threads, oldest first, and how
    many older top-level messages were left out (the page re-reads this on every event)."""
    parents = [m for m in state.messages.values() if not m.is_reply]
    keep = {m.ts for m in parents[-limit:]}
    shown = [m for m in state.messages.values() if m.ts in keep or m.thread_ts in keep]
    return shown, max(0, len(parents) - limit)


def roll_call(text: str) -> dict[str, str] | None:
    """A replica's roll call answer (its text is Troupe's: troupe.report reads it)."""
    answer = report.read_roll_call(text)
    if answer is None:
        return None
    name, version, state = answer
    return {"name": name, "version": version, "state": state}


# ---- the routes ----------------------------------------------------------------------------


class WebChat:
    """The page, its JSON views and its event stream, over one LocalSlack's store."""

    def __init__(self, server: LocalSlack) -> None:
        self.server = server
        self.store = server.store
        self.streams: set[asyncio.Queue[JSON | None]] = set()
        server.publisher.watchers.append(self._on_event)

    def register(self, app: web.Application) -> None:
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.asset)
        app.router.add_get("/web/workspace", self.workspace)
        app.router.add_get("/web/channel", self.channel)
        app.router.add_get("/web/fleet", self.fleet)
        app.router.add_get("/web/stream", self.stream)
        app.on_shutdown.append(self._close_streams)

    # ---- files ----

    async def index(self, request: web.Request) -> web.Response:
        body = (STATIC / "index.html").read_bytes()
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=HEADERS)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:  # a fixed list: no path ever reaches the file system
            raise web.HTTPNotFound()
        body = (STATIC / name).read_bytes()
        return web.Response(body=body, content_type=ASSETS[name], charset="utf-8", headers=HEADERS)

    # ---- JSON views ----

    async def workspace(self, request: web.Request) -> web.Response:
        ws = self.store.workspace
        return _json(
            {
                "team": {"id": ws.team.id, "name": ws.team.name},
                "api_url": self.server.url + "/api/",
                "people": [
                    {"id": u.id, "name": u.name, "real_name": u.real_name, "token": u.token}
                    for u in ws.users
                ],
                "bots": [{"id": a.bot_user_id, "app_id": a.id, "name": a.name} for a in ws.apps],
                "channels": [
                    {"id": c.id, "name": c.name, "topic": c.topic, "purpose": c.purpose}
                    for c in ws.channels
                ],
            }
        )

    async def channel(self, request: web.Request) -> web.Response:
        state = self.store.channels.get(request.query.get("channel", ""))
        if state is None:
            return _json({"ok": False, "error": "channel_not_found"}, status=404)
        shown, older = recent(state, PAGE_MESSAGES)
        messages = [self._message(state, m) for m in shown]
        return _json({"ok": True, "channel": state.info.id, "messages": messages, "older": older})

    def _message(self, state: ChannelState, msg: Message) -> JSON:
        out = self.store.render(state, msg)
        pin = state.pins.get(msg.ts)
        if pin is not None:
            out["pin"] = {"created": pin.created, "created_by": pin.created_by}
        return out

    async def fleet(self, request: web.Request) -> web.Response:
        return _json(
            {
                "apps": [
                    {
                        "app_id": a.id,
                        "name": a.name,
                        "bot_user_id": a.bot_user_id,
                        "connections": self.server.hub.connected(a.id),
                    }
                    for a in self.store.workspace.apps
                ],
                "replicas": self._replicas(),
                "claims": self._claims(),
            }
        )

    def _replicas(self) -> list[JSON]:
        """The newest roll call answer of each replica (messages are in ts order)."""
        seen: dict[str, JSON] = {}
        for state in self.store.channels.values():
            for msg in state.messages.values():
                if answer := roll_call(msg.text):
                    seen[answer["name"]] = {**answer, "app_id": msg.app_id, "ts": msg.ts}
        return sorted(seen.values(), key=lambda r: str(r["name"]))

    def _claims(self) -> list[JSON]:
        now = self.store.clock()
        out = []
        for state in self.store.channels.values():
            for ts, pin in state.pins.items():
                msg = state.messages.get(ts)
                if msg is None:
                    continue
                replies = [(r, state.messages[r].text) for r in msg.replies]
                holder = owner(claim_records(replies))
                claim: JSON = {
                    "channel": state.info.id,
                    "ts": ts,
                    "text": msg.text,
                    "pinned_by": pin.created_by,
                    "replica": None,
                }
                if holder is not None:
                    left = lease_left(holder.until, now)
                    claim |= {
                        "replica": holder.replica,
                        "generation": holder.generation,
                        "until": holder.until,
                        "lease_left": None if left is None else round(left, 1),
                    }
                out.append(claim)
        return out

    # ---- live updates ----

    def _on_event(self, event: JSON) -> None:
        summary = _summary(event)
        for queue in self.streams:
            try:
                queue.put_nowait(summary)
            except asyncio.QueueFull:
                # This page fell behind: drop what it missed and tell it to reload everything.
                _drain(queue)
                queue.put_nowait({"type": "resync"})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        # Listening before the headers go out: a client that has them misses no event.
        queue: asyncio.Queue[JSON | None] = asyncio.Queue(QUEUE_SIZE)
        self.streams.add(queue)
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n")
            while (item := await _next(queue)) is not None:
                line = b": keep-alive\n\n" if not item else _sse(item)
                await response.write(line)
        except (ConnectionResetError, RuntimeError):
            pass  # the page went away (aiohttp raises RuntimeError past a closed transport)
        finally:
            self.streams.discard(queue)
        return response

    async def _close_streams(self, app: web.Application) -> None:
        """End every stream, so that the server's shutdown does not wait for them."""
        for queue in list(self.streams):
            _drain(queue)
            queue.put_nowait(None)


async def _next(queue: asyncio.Queue[JSON | None]) -> JSON | None:
    """The next item; an empty dict (keep-alive) if nothing came for a while."""
    try:
        return await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
    except TimeoutError:
        return {}


def _drain(queue: asyncio.Queue[JSON | None]) -> None:
    while not queue.empty():
        queue.get_nowait()


def _summary(event: JSON) -> JSON:
    """What the page needs to know to refresh: kind, channel, and the message's ts."""
    item = event.get("item") or {}
    channel = event.get("channel") or event.get("channel_id") or item.get("channel")
    message = event.get("message") or item.get("message") or {}
    ts = event.get("deleted_ts") or message.get("ts") or item.get("ts") or event.get("ts")
    thread = message.get("thread_ts") or event.get("thread_ts")
    return {
        "type": event.get("type"),
        "subtype": event.get("subtype"),
        "channel": channel,
        "ts": ts,
        "thread_ts": thread,
    }


def _sse(item: JSON) -> bytes:
    return f"data: {json.dumps(item)}\n\n".encode()


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers=HEADERS)
