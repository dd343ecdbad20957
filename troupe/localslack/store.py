"""localslack's state: channels, messages, threads, pins, reactions (pure, no I/O).

Every mutation checks Slack's preconditions and raises :class:`ApiError` with
Slack's own error code, so the Web API layer only translates arguments.
The clock is injected: `ts` values are strictly increasing per channel and
fixed-width, so string order is time order (as on Slack).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from troupe.localslack.workspace import App, Channel, Workspace

JSON = dict[str, Any]
MAX_PINS = 100  # Slack Help Center: 100 pins per conversation
MAX_TEXT = 40_000  # chat.postMessage truncates/refuses longer text (msg_too_long)
MAX_REACTIONS = 23  # distinct emoji per message before too_many_reactions


class ApiError(Exception):
    """A Slack Web API error code (`{"ok": false, "error": code}`)."""

    def __init__(self, code: str, status: int = 200, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.extra = extra


@dataclass
class Message:
    ts: str
    user: str
    text: str
    blocks: list[Any] | None = None
    attachments: list[Any] | None = None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    subtype: str | None = None
    app_id: str | None = None
    edited: JSON | None = None
    client_msg_id: str | None = None  # set by a person's client; kept for the message's life
    reactions: dict[str, list[str]] = field(default_factory=dict)
    replies: list[str] = field(default_factory=list)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class Pin:
    created: int
    created_by: str


@dataclass
class ChannelState:
    info: Channel
    members: set[str]
    messages: dict[str, Message] = field(default_factory=dict)
    pins: dict[str, Pin] = field(default_factory=dict)
    last_us: int = 0


class Store:
    """All channels of one workspace. Not thread-safe: localslack runs on one event loop."""

    def __init__(self, workspace: Workspace, clock: Callable[[], float]) -> None:
        self.workspace = workspace
        self.clock = clock
        self.channels = {c.id: ChannelState(c, set(c.members)) for c in workspace.channels}
        self._last_event_us = 0

    # ---- lookups -------------------------------------------------------------------------

    def channel(self, channel_id: str | None) -> ChannelState:
        state = self.channels.get(channel_id or "")
        if state is None:
            raise ApiError("channel_not_found")
        return state

    def member_channel(self, channel_id: str | None, user: str) -> ChannelState:
        state = self.channel(channel_id)
        if user not in state.members:
            raise ApiError("not_in_channel")
        return state

    @staticmethod
    def message(state: ChannelState, ts: str | None) -> Message:
        if not ts:
            raise ApiError("no_item_specified")
        if not is_ts(ts):
            raise ApiError("bad_timestamp")
        msg = state.messages.get(ts)
        if msg is None:
            raise ApiError("message_not_found")
        return msg

    # ---- clock -----------------------------------------------------------------------------

    def _next_ts(self, state: ChannelState) -> str:
        state.last_us = max(int(self.clock() * 1_000_000), state.last_us + 1)
        return format_ts(state.last_us)

    def event_ts(self) -> str:
        """A workspace-wide increasing ts for events that create no message (reactions, pins)."""
        self._last_event_us = max(int(self.clock() * 1_000_000), self._last_event_us + 1)
        return format_ts(self._last_event_us)

    # ---- messages --------------------------------------------------------------------------

    def post(self, state: ChannelState, msg: Message) -> Message:
        """Store `msg` (its ts is assigned here) as a channel message or a thread reply."""
        if len(msg.text) > MAX_TEXT:
            raise ApiError("msg_too_long")
        parent = self._thread_parent(state, msg.thread_ts)
        msg.ts = self._next_ts(state)
        if parent is not None:
            msg.thread_ts = parent.ts
            parent.thread_ts = parent.ts
            parent.replies.append(msg.ts)
        state.messages[msg.ts] = msg
        return msg

    def _thread_parent(self, state: ChannelState, thread_ts: str | None) -> Message | None:
        if not thread_ts:
            return None
        if not is_ts(thread_ts):
            raise ApiError("invalid_thread_ts")
        parent = state.messages.get(thread_ts)
        if parent is None:
            raise ApiError("thread_not_found")
        if parent.is_reply:
            # Slack files a reply to a reply under the original parent.
            return state.messages[parent.thread_ts or ""]
        if parent.subtype is not None:
            raise ApiError("cannot_reply_to_message")
        return parent

    def update(self, state: ChannelState, ts: str | None, user: str, change: JSON) -> Message:
        msg = self.message(state, ts)
        if msg.user != user:
            raise ApiError("cant_update_message")
        if len(change.get("text") or "") > MAX_TEXT:
            raise ApiError("msg_too_long")
        for key, value in change.items():
            setattr(msg, key, value)
        msg.edited = {"user": user, "ts": self._next_ts(state)}
        return msg

    def delete(self, state: ChannelState, ts: str | None, user: str) -> Message:
        msg = self.message(state, ts)
        if msg.user != user:
            raise ApiError("cant_delete_message")
        state.pins.pop(msg.ts, None)
        if msg.replies:
            # Slack keeps a deleted thread parent as a tombstone so its replies stay reachable.
            state.messages[msg.ts] = tombstone(msg)
            return msg
        del state.messages[msg.ts]
        if msg.is_reply:
            parent = state.messages.get(msg.thread_ts or "")
            if parent is not None:
                parent.replies.remove(msg.ts)
        return msg

    # ---- pins ------------------------------------------------------------------------------

    def check_pinnable(self, state: ChannelState, ts: str | None) -> Message:
        msg = self.message(state, ts)
        if msg.subtype == "channel_join":
            raise ApiError("not_pinnable")
        if msg.ts in state.pins:
            raise ApiError("already_pinned")
        if len(state.pins) >= MAX_PINS:
            raise ApiError("too_many_pins")
        return msg

    def pin(self, state: ChannelState, msg: Message, user: str) -> Pin:
        """Record the pin; the caller checked with check_pinnable (maybe earlier: see faults)."""
        pin = Pin(created=int(self.clock()), created_by=user)
        state.pins[msg.ts] = pin
        return pin

    def unpin(self, state: ChannelState, ts: str | None) -> Message:
        msg = self.message(state, ts)
        if state.pins.pop(msg.ts, None) is None:
            raise ApiError("no_pin")
        return msg

    # ---- reactions -------------------------------------------------------------------------

    def react(self, state: ChannelState, ts: str | None, user: str, name: str | None) -> Message:
        msg = self.message(state, ts)
        emoji = valid_emoji(name)
        users = msg.reactions.get(emoji)
        if users is not None and user in users:
            raise ApiError("already_reacted")
        if users is None and len(msg.reactions) >= MAX_REACTIONS:
            raise ApiError("too_many_reactions")
        msg.reactions.setdefault(emoji, []).append(user)
        return msg

    def unreact(self, state: ChannelState, ts: str | None, user: str, name: str | None) -> Message:
        msg = self.message(state, ts)
        emoji = valid_emoji(name)
        users = msg.reactions.get(emoji, [])
        if user not in users:
            raise ApiError("no_reaction")
        users.remove(user)
        if not users:
            del msg.reactions[emoji]
        return msg

    # ---- reading ---------------------------------------------------------------------------

    def history(self, state: ChannelState, window: Window) -> Page:
        """Top-level messages (and thread broadcasts), newest first."""
        shown = (
            m for m in reversed(state.messages.values()) if not m.is_reply or m.reply_broadcast
        )
        return window.page(shown, newest_first=True)

    def replies(self, state: ChannelState, ts: str | None, window: Window) -> Page:
        """The parent first, then its replies oldest to newest."""
        if not ts or not is_ts(ts):
            raise ApiError("thread_not_found")
        parent = state.messages.get(ts)
        if parent is None:
            raise ApiError("thread_not_found")
        if parent.is_reply:
            parent = state.messages[parent.thread_ts or ""]
        thread = [parent, *(state.messages[r] for r in parent.replies)]
        return window.page(thread, newest_first=False)

    def join(self, state: ChannelState, user: str) -> bool:
        """Add `user`; False if they were already a member."""
        if user in state.members:
            return False
        state.members.add(user)
        return True

    # ---- persistence -----------------------------------------------------------------------

    def snapshot(self) -> JSON:
        return {
            "version": 1,
            "channels": {
                cid: {
                    "members": sorted(s.members),
                    "last_us": s.last_us,
                    "messages": [asdict(m) for m in s.messages.values()],
                    "pins": {ts: asdict(p) for ts, p in s.pins.items()},
                }
                for cid, s in self.channels.items()
            },
        }

    def restore(self, data: JSON) -> None:
        """Load a snapshot; channels that the workspace no longer has are ignored."""
        for cid, saved in data.get("channels", {}).items():
            state = self.channels.get(cid)
            if state is None:
                continue
            state.members |= set(saved["members"])
            state.last_us = saved["last_us"]
            state.messages = {m["ts"]: Message(**m) for m in saved["messages"]}
            state.pins = {ts: Pin(**p) for ts, p in saved["pins"].items()}

    # ---- shapes ----------------------------------------------------------------------------

    def app_of(self, msg: Message) -> App | None:
        return next((a for a in self.workspace.apps if a.id == msg.app_id), None)

    def render(self, state: ChannelState, msg: Message) -> JSON:
        """A message as Slack's Web API and events show it."""
        out: JSON = {"type": "message", "text": msg.text, "user": msg.user, "ts": msg.ts}
        out["team"] = self.workspace.team.id
        if msg.subtype:
            out["subtype"] = msg.subtype
        if msg.client_msg_id:
            out["client_msg_id"] = msg.client_msg_id
        if msg.blocks is not None:
            out["blocks"] = msg.blocks
        if msg.attachments is not None:
            out["attachments"] = msg.attachments
        out.update(self._bot_fields(msg))
        out.update(self._thread_fields(state, msg))
        if msg.edited:
            out["edited"] = dict(msg.edited)
        if msg.reactions:
            out["reactions"] = [
                {"name": n, "users": list(u), "count": len(u)} for n, u in msg.reactions.items()
            ]
        if msg.ts in state.pins:
            out["pinned_to"] = [state.info.id]
        return out

    def _bot_fields(self, msg: Message) -> JSON:
        app = self.app_of(msg)
        if app is None:
            return {}
        profile = {
            "id": app.bot_id,
            "deleted": False,
            "name": app.name,
            "updated": 0,
            "app_id": app.id,
            "icons": {"image_36": "", "image_48": "", "image_72": ""},
            "team_id": self.workspace.team.id,
        }
        return {"bot_id": app.bot_id, "app_id": app.id, "bot_profile": profile}

    @staticmethod
    def _thread_fields(state: ChannelState, msg: Message) -> JSON:
        if msg.thread_ts is None:
            return {}
        if msg.is_reply:
            parent = state.messages.get(msg.thread_ts)
            parent_user = parent.user if parent else msg.user
            return {"thread_ts": msg.thread_ts, "parent_user_id": parent_user}
        users = list(dict.fromkeys(state.messages[r].user for r in msg.replies))
        return {
            "thread_ts": msg.ts,
            "reply_count": len(msg.replies),
            "reply_users_count": len(users),
            "reply_users": users[:5],
            "latest_reply": msg.replies[-1] if msg.replies else msg.ts,
            "is_locked": False,
            "subscribed": False,
        }


@dataclass(frozen=True)
class Page:
    messages: list[Message]
    next_cursor: str

    @property
    def has_more(self) -> bool:
        return bool(self.next_cursor)


@dataclass(frozen=True)
class Window:
    """conversations.history / replies paging arguments, already validated."""

    latest: str | None = None
    oldest: str | None = None
    inclusive: bool = False
    limit: int = 100
    cursor: str | None = None

    def page(self, items: Iterable[Message], newest_first: bool) -> Page:
        """Up to `limit` items in range and past the cursor; stops reading once it knows
        whether there is more, so the newest page of a long channel is cheap."""
        after = decode_cursor(self.cursor) if self.cursor else None
        page: list[Message] = []
        for msg in items:
            if not self._in_range(msg.ts) or not _past(msg.ts, after, newest_first):
                continue
            if len(page) == self.limit:
                return Page(page, encode_cursor(page[-1].ts))
            page.append(msg)
        return Page(page, "")

    def _in_range(self, ts: str) -> bool:
        if self.latest and (ts > self.latest or (ts == self.latest and not self.inclusive)):
            return False
        return not (
            self.oldest and (ts < self.oldest or (ts == self.oldest and not self.inclusive))
        )


def _past(ts: str, cursor: str | None, newest_first: bool) -> bool:
    if cursor is None:
        return True
    return ts < cursor if newest_first else ts > cursor


def tombstone(msg: Message) -> Message:
    return Message(
        ts=msg.ts,
        user="USLACKBOT",
        text="This message was deleted.",
        thread_ts=msg.thread_ts,
        subtype="tombstone",
        replies=msg.replies,
    )


def format_ts(micros: int) -> str:
    return f"{micros // 1_000_000:010d}.{micros % 1_000_000:06d}"


def is_ts(value: str) -> bool:
    head, dot, tail = value.partition(".")
    return bool(dot) and len(head) == 10 and len(tail) == 6 and (head + tail).isdigit()


def valid_emoji(name: str | None) -> str:
    if not name:
        raise ApiError("invalid_name")
    emoji = name.strip(":")
    if not emoji or any(c.isspace() for c in emoji):
        raise ApiError("invalid_name")
    return emoji


def encode_cursor(ts: str) -> str:
    # Slack's cursors are base64 of "next_ts:<ts without dot>"; clients treat them as opaque.
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        kind, _, ts = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError("invalid_cursor") from exc
    if kind != "next_ts" or not is_ts(ts):
        raise ApiError("invalid_cursor")
    return ts


def iter_pins(state: ChannelState) -> Iterator[tuple[Message, Pin]]:
    """Pins newest first, as pins.list shows them."""
    pinned = [(state.messages[ts], pin) for ts, pin in state.pins.items() if ts in state.messages]
    yield from sorted(pinned, key=lambda mp: mp[1].created, reverse=True)
