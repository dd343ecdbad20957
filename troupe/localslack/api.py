"""The Web API: one function per Slack method, over the Store (no HTTP here).

`WebApi.call(method, token, args)` does what Slack does around every method —
authenticate, rate-limit, inject configured faults — and then runs the method,
which checks arguments and mutates the Store, and publishes the events the
change causes. Every failure is a Slack error code; nothing raises past `call`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from troupe.localslack import events
from troupe.localslack.delivery import Publisher, SocketHub
from troupe.localslack.faults import ErrorFault, Faults
from troupe.localslack.ratelimit import RateLimiter
from troupe.localslack.store import (
    JSON,
    ApiError,
    ChannelState,
    Message,
    Store,
    Window,
    decode_cursor,
    encode_cursor,
    is_ts,
    iter_pins,
)
from troupe.localslack.workspace import App

log = logging.getLogger(__name__)

SCOPES = (
    "app_mentions:read,channels:history,channels:join,channels:read,chat:write,"
    "pins:read,pins:write,reactions:read,reactions:write,users:read,connections:write"
)
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60


@dataclass(frozen=True)
class Caller:
    """Who a token belongs to: a person, an app's bot user, or an app-level (xapp) token."""

    kind: Literal["user", "bot", "app"]
    user_id: str
    app: App | None = None

    @property
    def owner(self) -> str:
        """Whose rate-limit budget a call spends: the app's, or the person's."""
        return self.app.id if self.app else self.user_id


@dataclass(frozen=True)
class Reply:
    body: JSON
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class Args:
    """Request arguments from a form, JSON or query string, read the way Slack reads them."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def get(self, name: str) -> str | None:
        value = self.raw.get(name)
        return None if value is None or value == "" else str(value)

    def flag(self, name: str) -> bool:
        value = self.raw.get(name)
        return value is True or str(value).lower() in ("1", "true")

    def number(
        self, name: str, default: int, lo: int, hi: int, error: str = "invalid_limit"
    ) -> int:
        value = self.raw.get(name)
        if value in (None, ""):
            return default
        try:
            number = int(str(value))
        except ValueError as exc:
            raise ApiError(error) from exc
        if number < lo:
            raise ApiError(error)
        return min(number, hi)

    def json_list(self, name: str, error: str) -> list[Any] | None:
        value = self.raw.get(name)
        if value in (None, ""):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ApiError(error) from exc
        if not isinstance(value, list) or not all(isinstance(b, dict) for b in value):
            raise ApiError(error)
        return value


Handler = Callable[["WebApi", Caller, Args], Awaitable[JSON]]
METHODS: dict[str, tuple[Handler, frozenset[str]]] = {}


def method(name: str, *callers: str) -> Callable[[Handler], Handler]:
    """Register a Web API method and the token kinds that may call it."""

    def register(fn: Handler) -> Handler:
        METHODS[name] = (fn, frozenset(callers or ("user", "bot")))
        return fn

    return register


@dataclass
class ResponseTarget:
    """Where a response_url posts: the message that held the clicked button."""

    channel: str
    message_ts: str
    app_id: str
    user: str
    expires: float
    uses: int = 0


class WebApi:
    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        hub: SocketHub,
        limiter: RateLimiter,
        faults: Faults,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.ws = store.workspace
        self.publisher = publisher
        self.hub = hub
        self.limiter = limiter
        self.faults = faults
        self.rng = rng or random.Random()
        self.origin = "http://127.0.0.1:8310"  # set by the server once it is bound
        self.calls: Counter[tuple[str, str]] = Counter()
        self.ephemeral: list[JSON] = []
        self.responders: dict[str, ResponseTarget] = {}
        self._tokens = self._token_table()

    def _token_table(self) -> dict[str, Caller]:
        table = {u.token: Caller("user", u.id) for u in self.ws.users}
        for app in self.ws.apps:
            table[app.bot_token] = Caller("bot", app.bot_user_id, app)
            table[app.app_token] = Caller("app", "", app)
        return table

    # ---- the envelope of every call ------------------------------------------------------

    async def call(self, name: str, token: str | None, raw: dict[str, Any]) -> Reply:
        reply = await self._call(name, token, Args(raw))
        outcome = "ok" if reply.body.get("ok") else str(reply.body.get("error"))
        self.calls[(name, outcome)] += 1
        return reply

    async def _call(self, name: str, token: str | None, args: Args) -> Reply:
        if name == "api.test":
            return Reply({"ok": True, "args": {k: str(v) for k, v in args.raw.items()}})
        entry = METHODS.get(name)
        if entry is None:
            return _error("unknown_method", req_method=name)
        handler, allowed = entry
        try:
            caller = self._authenticate(token, allowed)
            lost = await self._misbehave(name, caller, args)
            body = await handler(self, caller, args)
            if lost is not None:
                raise ApiError(lost.error, lost.status)
        except ApiError as exc:
            return _error(exc.code, exc.status, **exc.extra)
        headers = {"x-oauth-scopes": SCOPES} if name == "auth.test" else {}
        return Reply({"ok": True, **body}, headers=headers)

    def _authenticate(self, token: str | None, allowed: frozenset[str]) -> Caller:
        if not token:
            raise ApiError("not_authed")
        caller = self._tokens.get(token)
        if caller is None:
            raise ApiError("invalid_auth")
        if caller.kind not in allowed:
            raise ApiError("not_allowed_token_type")
        return caller

    async def _misbehave(self, name: str, caller: Caller, args: Args) -> ErrorFault | None:
        """Slack's rate limits, then the faults an operator injected. Returns a fault whose
        error replaces the answer after the call took effect (`after`)."""
        channel = self._channel_id(args.get("channel"))
        wait = self.limiter.check(caller.owner, name, channel, time.monotonic())
        if wait:
            raise ApiError("ratelimited", 429, retry_after=wait)
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        fault = self.faults.pick_error(name, self.rng)
        if fault is not None and not fault.after:
            raise ApiError(fault.error, fault.status)
        return fault

    # ---- helpers shared by methods --------------------------------------------------------

    def _channel_id(self, ref: str | None) -> str | None:
        """Channels may be named by ID or by `#name`, as chat.postMessage allows."""
        if ref and not ref.startswith("C"):
            name = ref.lstrip("#")
            return next((c.id for c in self.ws.channels if c.name == name), ref)
        return ref

    def resolve_channel(self, ref: str | None) -> ChannelState:
        return self.store.channel(self._channel_id(ref))

    def writable_channel(self, caller: Caller, args: Args) -> ChannelState:
        state = self.resolve_channel(args.get("channel"))
        if caller.user_id not in state.members:
            raise ApiError("not_in_channel")
        return state

    def content(self, args: Args) -> JSON:
        """text/blocks/attachments of a message; Slack needs at least one of them."""
        blocks = args.json_list("blocks", "invalid_blocks")
        if blocks is not None and not all("type" in b for b in blocks):
            raise ApiError("invalid_blocks")
        attachments = args.json_list("attachments", "invalid_attachments")
        text = args.get("text") or ""
        if not text and not blocks and not attachments:
            raise ApiError("no_text")
        return {"text": text, "blocks": blocks, "attachments": attachments}

    def publish_message(self, state: ChannelState, msg: Message) -> JSON:
        shown = self.store.render(state, msg)
        self.publisher.event(state.members, events.message_event(state.info.id, shown))
        mentioned = events.mentioned_users(msg.text) & state.members
        if mentioned:
            self.publisher.event(
                state.members, events.app_mention(state.info.id, shown), only=mentioned
            )
        return shown

    def post_as(self, caller: Caller, state: ChannelState, content: JSON, **extra: Any) -> JSON:
        msg = Message(ts="", user=caller.user_id, text="")
        if caller.app is not None:
            msg.app_id = caller.app.id
        else:
            msg.client_msg_id = str(uuid.uuid4())  # what a person's Slack client attaches
        for key, value in {**content, **extra}.items():
            setattr(msg, key, value)
        if msg.reply_broadcast and msg.thread_ts:
            msg.subtype = "thread_broadcast"
        return self.publish_message(state, self.store.post(state, msg))

    def remove_message(self, state: ChannelState, ts: str | None, user: str) -> JSON:
        old = self.store.render(state, self.store.message(state, ts))
        self.store.delete(state, ts, user)
        event = events.message_deleted(state.info.id, old, self.store.event_ts())
        self.publisher.event(state.members, event)
        return old

    def change_message(self, state: ChannelState, ts: str | None, user: str, change: JSON) -> JSON:
        old = self.store.render(state, self.store.message(state, ts))
        msg = self.store.update(state, ts, user, change)
        new = self.store.render(state, msg)
        event_ts = msg.edited["ts"] if msg.edited else msg.ts
        self.publisher.event(
            state.members, events.message_changed(state.info.id, new, old, event_ts)
        )
        return new


def _error(code: str, status: int = 200, **extra: Any) -> Reply:
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra.pop("retry_after"))
    return Reply({"ok": False, "error": code, **extra}, status, headers)


# ---- auth ------------------------------------------------------------------------------------


@method("auth.test", "user", "bot")
async def auth_test(api: WebApi, caller: Caller, args: Args) -> JSON:
    user = api.ws.user(caller.user_id)
    body: JSON = {
        "url": api.ws.team.url,
        "team": api.ws.team.name,
        "user": user.name if user else (caller.app.name if caller.app else ""),
        "team_id": api.ws.team.id,
        "user_id": caller.user_id,
        "is_enterprise_install": False,
    }
    if caller.app is not None:
        body |= {"bot_id": caller.app.bot_id, "app_id": caller.app.id, "app_name": caller.app.name}
    return body


@method("apps.connections.open", "app")
async def connections_open(api: WebApi, caller: Caller, args: Args) -> JSON:
    assert caller.app is not None  # only app-level tokens get here
    ticket = api.hub.ticket(caller.app.id)
    ws_origin = api.origin.replace("http", "ws", 1)
    return {"url": f"{ws_origin}/link/?ticket={ticket}&app_id={caller.app.id}"}


# ---- chat ------------------------------------------------------------------------------------


@method("chat.postMessage")
async def chat_post_message(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.writable_channel(caller, args)
    content = api.content(args)
    shown = api.post_as(
        caller,
        state,
        content,
        thread_ts=args.get("thread_ts"),
        reply_broadcast=args.flag("reply_broadcast"),
    )
    return {"channel": state.info.id, "ts": shown["ts"], "message": shown}


@method("chat.update")
async def chat_update(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.resolve_channel(args.get("channel"))
    change = {k: v for k, v in api.content(args).items() if v is not None}
    new = api.change_message(state, args.get("ts"), caller.user_id, change)
    return {"channel": state.info.id, "ts": new["ts"], "text": new["text"], "message": new}


@method("chat.delete")
async def chat_delete(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.resolve_channel(args.get("channel"))
    old = api.remove_message(state, args.get("ts"), caller.user_id)
    return {"channel": state.info.id, "ts": old["ts"]}


@method("chat.postEphemeral")
async def chat_post_ephemeral(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.writable_channel(caller, args)
    user = args.get("user")
    if user not in state.members:
        raise ApiError("user_not_in_channel")
    content = api.content(args)
    message_ts = api.store.event_ts()
    api.ephemeral.append({"channel": state.info.id, "user": user, "ts": message_ts, **content})
    return {"message_ts": message_ts}


# ---- pins ------------------------------------------------------------------------------------


@method("pins.add")
async def pins_add(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.writable_channel(caller, args)
    msg = api.store.check_pinnable(state, args.get("timestamp"))
    if api.faults.non_atomic_pins_ms:
        # Simulated non-atomic server: the check above and the write below are apart in time.
        await asyncio.sleep(api.faults.non_atomic_pins_ms / 1000)
    pin = api.store.pin(state, msg, caller.user_id)
    _publish_pin(api, state, msg, "pin_added", caller.user_id, pin.created, pin.created_by)
    return {}


@method("pins.remove")
async def pins_remove(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.writable_channel(caller, args)
    msg = api.store.unpin(state, args.get("timestamp"))
    _publish_pin(api, state, msg, "pin_removed", caller.user_id, int(time.time()), caller.user_id)
    return {}


def _publish_pin(
    api: WebApi, state: ChannelState, msg: Message, kind: str, user: str, created: int, by: str
) -> None:
    info = {
        "created": created,
        "created_by": by,
        "pin_count": len(state.pins),
        "event_ts": api.store.event_ts(),
    }
    shown = api.store.render(state, msg)
    shown["permalink"] = _permalink(api, state, msg)
    api.publisher.event(state.members, events.pin(kind, user, state.info.id, shown, info))


@method("pins.list")
async def pins_list(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.resolve_channel(args.get("channel"))
    items = []
    for msg, pin in iter_pins(state):
        shown = api.store.render(state, msg)
        shown["permalink"] = _permalink(api, state, msg)
        items.append(
            {
                "type": "message",
                "created": pin.created,
                "created_by": pin.created_by,
                "channel": state.info.id,
                "message": shown,
            }
        )
    return {"items": items}


def _permalink(api: WebApi, state: ChannelState, msg: Message) -> str:
    return f"{api.ws.team.url}archives/{state.info.id}/p{msg.ts.replace('.', '')}"


# ---- reactions -------------------------------------------------------------------------------


@method("reactions.add")
async def reactions_add(api: WebApi, caller: Caller, args: Args) -> JSON:
    return _react(api, caller, args, "reaction_added")


@method("reactions.remove")
async def reactions_remove(api: WebApi, caller: Caller, args: Args) -> JSON:
    return _react(api, caller, args, "reaction_removed")


def _react(api: WebApi, caller: Caller, args: Args, kind: str) -> JSON:
    state = api.resolve_channel(args.get("channel"))
    name = args.get("name")
    change = api.store.react if kind == "reaction_added" else api.store.unreact
    msg = change(state, args.get("timestamp"), caller.user_id, name)
    emoji = (name or "").strip(":")
    shown = api.store.render(state, msg)
    event = events.reaction(kind, caller.user_id, emoji, state.info.id, shown, api.store.event_ts())
    api.publisher.event(state.members, event)
    return {}


@method("reactions.get")
async def reactions_get(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.resolve_channel(args.get("channel"))
    msg = api.store.message(state, args.get("timestamp"))
    shown = api.store.render(state, msg)
    shown["permalink"] = _permalink(api, state, msg)
    return {"type": "message", "channel": state.info.id, "message": shown}


# ---- conversations ---------------------------------------------------------------------------


def _window(args: Args) -> Window:
    for name in ("latest", "oldest"):
        value = args.get(name)
        if value is not None and not is_ts(value) and not value.isdigit():
            raise ApiError(f"invalid_ts_{name}")
    cursor = args.get("cursor")
    if cursor:
        decode_cursor(cursor)
    return Window(
        latest=_as_ts(args.get("latest")),
        oldest=_as_ts(args.get("oldest")),
        inclusive=args.flag("inclusive"),
        limit=args.number("limit", 100, 1, 999),
        cursor=cursor,
    )


def _as_ts(value: str | None) -> str | None:
    """Slack accepts whole seconds too ("1700000000") for latest/oldest."""
    if value is None or is_ts(value):
        return value
    return f"{int(value):010d}.000000"


@method("conversations.history")
async def conversations_history(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.writable_channel(caller, args)
    page = api.store.history(state, _window(args))
    return {
        "messages": [api.store.render(state, m) for m in page.messages],
        "has_more": page.has_more,
        "pin_count": len(state.pins),
        "channel_actions_ts": None,
        "channel_actions_count": 0,
        "response_metadata": {"next_cursor": page.next_cursor},
    }


@method("conversations.replies")
async def conversations_replies(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.writable_channel(caller, args)
    page = api.store.replies(state, args.get("ts"), _window(args))
    return {
        "messages": [api.store.render(state, m) for m in page.messages],
        "has_more": page.has_more,
        "response_metadata": {"next_cursor": page.next_cursor},
    }


def _channel_json(api: WebApi, state: ChannelState, caller: Caller) -> JSON:
    info = state.info
    return {
        "id": info.id,
        "name": info.name,
        "name_normalized": info.name,
        "is_channel": True,
        "is_group": False,
        "is_im": False,
        "is_mpim": False,
        "is_private": False,
        "is_archived": False,
        "is_general": False,
        "is_shared": False,
        "is_ext_shared": False,
        "is_org_shared": False,
        "is_member": caller.user_id in state.members,
        "created": 1_700_000_000,
        "creator": api.ws.users[0].id if api.ws.users else "",
        "unlinked": 0,
        "topic": {"value": info.topic, "creator": "", "last_set": 0},
        "purpose": {"value": info.purpose, "creator": "", "last_set": 0},
        "previous_names": [],
        "num_members": len(state.members),
        "context_team_id": api.ws.team.id,
    }


@method("conversations.info")
async def conversations_info(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.resolve_channel(args.get("channel"))
    return {"channel": _channel_json(api, state, caller)}


@method("conversations.list")
async def conversations_list(api: WebApi, caller: Caller, args: Args) -> JSON:
    types = set((args.get("types") or "public_channel").split(","))
    if not types <= {"public_channel", "private_channel", "mpim", "im"}:
        raise ApiError("invalid_types")
    limit = args.number("limit", 100, 1, 1000)
    states = list(api.store.channels.values()) if "public_channel" in types else []
    cursor = args.get("cursor")
    if cursor:
        after = _decode_id_cursor(cursor)
        states = [s for s in states if s.info.id > after]
    states.sort(key=lambda s: s.info.id)
    page = states[:limit]
    more = len(states) > limit
    next_cursor = _encode_id_cursor(page[-1].info.id) if more else ""
    return {
        "channels": [_channel_json(api, s, caller) for s in page],
        "response_metadata": {"next_cursor": next_cursor},
    }


def _encode_id_cursor(channel_id: str) -> str:
    return encode_cursor("0000000000.000000").replace("=", "") + "_" + channel_id


def _decode_id_cursor(cursor: str) -> str:
    _, sep, channel_id = cursor.rpartition("_")
    if not sep or not channel_id.startswith("C"):
        raise ApiError("invalid_cursor")
    return channel_id


@method("conversations.join")
async def conversations_join(api: WebApi, caller: Caller, args: Args) -> JSON:
    state = api.resolve_channel(args.get("channel"))
    if not api.store.join(state, caller.user_id):
        warning = "already_in_channel"
        return {
            "channel": _channel_json(api, state, caller),
            "warning": warning,
            "response_metadata": {"warnings": [warning]},
        }
    joined = events.member_joined(
        caller.user_id, state.info.id, api.ws.team.id, api.store.event_ts()
    )
    api.publisher.event(state.members, joined)
    text = f"<@{caller.user_id}> has joined the channel"
    api.post_as(caller, state, {"text": text}, subtype="channel_join")
    return {"channel": _channel_json(api, state, caller)}


# ---- users -----------------------------------------------------------------------------------


@method("users.info")
async def users_info(api: WebApi, caller: Caller, args: Args) -> JSON:
    user_id = args.get("user") or ""
    person = api.ws.user(user_id)
    app = api.ws.app_by_bot_user(user_id)
    if person is None and app is None:
        raise ApiError("user_not_found")
    name = person.name if person else app.name if app else ""
    real = (person.real_name if person else None) or name
    profile: JSON = {
        "real_name": real,
        "real_name_normalized": real,
        "display_name": name,
        "display_name_normalized": name,
        "team": api.ws.team.id,
    }
    if app is not None:
        profile |= {"bot_id": app.bot_id, "api_app_id": app.id, "always_active": True}
    return {
        "user": {
            "id": user_id,
            "team_id": api.ws.team.id,
            "name": name,
            "deleted": False,
            "real_name": real,
            "tz": "Etc/UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": app is not None,
            "is_app_user": False,
            "updated": 1_700_000_000,
        }
    }


# ---- interactivity (localslack extension: a person clicks a button) ---------------------------


@method("localslack.click", "user")
async def localslack_click(api: WebApi, caller: Caller, args: Args) -> JSON:
    """What Slack's client does when a person clicks a Block Kit button: deliver
    `block_actions` to the app that posted the message. Arguments: channel, ts,
    action_id (and optionally value, to pick one of several buttons with that id)."""
    state = api.writable_channel(caller, args)
    msg = api.store.message(state, args.get("ts"))
    button, block_id = _find_button(msg, args.get("action_id"), args.get("value"))
    app = api.store.app_of(msg)
    if app is None:
        raise ApiError("not_an_app_message")
    token = secrets.token_urlsafe(16)
    api.responders[token] = ResponseTarget(
        state.info.id, msg.ts, app.id, caller.user_id, time.time() + RESPONSE_URL_TTL
    )
    payload = _block_actions(api, caller, state, msg, button, block_id, token)
    delivery = api.publisher.send(app, "interactive", payload)
    return {"trigger_id": payload["trigger_id"], "delivery_id": delivery.id}


def _find_button(msg: Message, action_id: str | None, value: str | None) -> tuple[JSON, str]:
    for block in msg.blocks or []:
        elements = [*(block.get("elements") or []), block.get("accessory") or {}]
        for element in elements:
            if (
                element.get("type") == "button"
                and element.get("action_id") == action_id
                and value in (None, element.get("value"))
            ):
                return element, str(block.get("block_id", ""))
    raise ApiError("action_not_found")


def _block_actions(
    api: WebApi,
    caller: Caller,
    state: ChannelState,
    msg: Message,
    button: JSON,
    block_id: str,
    token: str,
) -> JSON:
    user = api.ws.user(caller.user_id)
    name = user.name if user else caller.user_id
    action = {
        "action_id": button["action_id"],
        "block_id": block_id,
        "text": button.get("text", {}),
        "value": button.get("value", ""),
        "type": "button",
        "action_ts": api.store.event_ts(),
    }
    if "style" in button:
        action["style"] = button["style"]
    return {
        "type": "block_actions",
        "user": {"id": caller.user_id, "username": name, "name": name, "team_id": api.ws.team.id},
        "api_app_id": msg.app_id,
        "token": "verification-token",
        "container": {
            "type": "message",
            "message_ts": msg.ts,
            "channel_id": state.info.id,
            "is_ephemeral": False,
        },
        "trigger_id": f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}",
        "team": {"id": api.ws.team.id, "domain": api.ws.team.domain or api.ws.team.name},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": state.info.id, "name": state.info.name},
        "message": api.store.render(state, msg),
        "state": {"values": {}},
        "response_url": f"{api.origin}/actions/{token}",
        "actions": [action],
    }


async def respond(api: WebApi, token: str, body: JSON) -> Reply:
    """A POST to a response_url: replace or delete the original message, or post a new one."""
    target = api.responders.get(token)
    if target is None or time.time() > target.expires:
        return Reply({"ok": False, "error": "expired_url"}, 404)
    if target.uses >= RESPONSE_URL_USES:
        return Reply({"ok": False, "error": "used_url"}, 404)
    target.uses += 1
    try:
        _respond(api, target, body)
    except ApiError as exc:
        api.calls[("response_url", exc.code)] += 1
        return Reply({"ok": False, "error": exc.code}, 400)
    api.calls[("response_url", "ok")] += 1  # counted, so autosave notices the change
    return Reply({"ok": True})


def _respond(api: WebApi, target: ResponseTarget, body: JSON) -> None:
    state = api.store.channel(target.channel)
    app = next(a for a in api.ws.apps if a.id == target.app_id)
    bot = Caller("bot", app.bot_user_id, app)
    if body.get("delete_original"):
        api.remove_message(state, target.message_ts, app.bot_user_id)
        return
    content = api.content(Args(body))
    if body.get("replace_original"):
        change = {k: v for k, v in content.items() if v is not None}
        api.change_message(state, target.message_ts, app.bot_user_id, change)
    elif body.get("response_type") == "in_channel":
        api.post_as(bot, state, content, thread_ts=body.get("thread_ts"))
    else:
        api.ephemeral.append({"channel": state.info.id, "user": target.user, **content})
