"""Event payloads as Slack sends them (pure): the inner `event` and its `event_callback`.

Shapes follow shared/slack/samples/events/*; tests compare field names with them.
"""

from __future__ import annotations

import re
from typing import Any

from troupe.localslack.workspace import App, Workspace

JSON = dict[str, Any]
MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def mentioned_users(text: str) -> set[str]:
    return set(MENTION.findall(text))


def message_event(channel: str, message: JSON) -> JSON:
    return {**message, "channel": channel, "event_ts": message["ts"], "channel_type": "channel"}


def app_mention(channel: str, message: JSON) -> JSON:
    keep = (
        "client_msg_id",
        "user",
        "text",
        "ts",
        "team",
        "blocks",
        "thread_ts",
        "bot_id",
        "app_id",
        "bot_profile",
    )
    event = {k: message[k] for k in keep if k in message}
    return {"type": "app_mention", **event, "channel": channel, "event_ts": message["ts"]}


def message_changed(channel: str, new: JSON, old: JSON, event_ts: str) -> JSON:
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": channel,
        "message": new,
        "previous_message": old,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": "channel",
    }


def message_deleted(channel: str, old: JSON, event_ts: str) -> JSON:
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": channel,
        "deleted_ts": old["ts"],
        "previous_message": old,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": "channel",
    }


def reaction(kind: str, user: str, name: str, channel: str, message: JSON, event_ts: str) -> JSON:
    return {
        "type": kind,
        "user": user,
        "reaction": name,
        "item": {"type": "message", "channel": channel, "ts": message["ts"]},
        "item_user": message["user"],
        "event_ts": event_ts,
    }


def pin(kind: str, user: str, channel: str, message: JSON, pin_info: JSON) -> JSON:
    """pin_added / pin_removed; `pin_info` has created, created_by, pin_count, event_ts."""
    event: JSON = {
        "type": kind,
        "user": user,
        "channel_id": channel,
        "item": {
            "type": "message",
            "created": pin_info["created"],
            "created_by": pin_info["created_by"],
            "channel": channel,
            "message": message,
        },
        "item_user": message["user"],
        "pin_count": pin_info["pin_count"],
        "pinned_info": {
            "channel": channel,
            "pinned_by": pin_info["created_by"],
            "pinned_ts": pin_info["created"],
        },
        "event_ts": pin_info["event_ts"],
    }
    if kind == "pin_removed":
        event["has_pins"] = pin_info["pin_count"] > 0
    return event


def member_joined(user: str, channel: str, team: str, event_ts: str) -> JSON:
    return {
        "type": "member_joined_channel",
        "user": user,
        "channel": channel,
        "channel_type": "C",
        "team": team,
        "event_ts": event_ts,
    }


def event_callback(ws: Workspace, app: App, event: JSON, event_id: str, now: float) -> JSON:
    """The envelope the Events API POSTs (and Socket Mode wraps) for one app."""
    channel = (
        event.get("channel") or event.get("channel_id") or event.get("item", {}).get("channel")
    )
    return {
        "token": "verification-token",
        "team_id": ws.team.id,
        "context_team_id": ws.team.id,
        "context_enterprise_id": None,
        "api_app_id": app.id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(now),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": ws.team.id,
                "user_id": app.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{event['type']}-{ws.team.id}-{channel}",
    }
