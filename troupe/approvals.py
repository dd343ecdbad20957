"""Approvals read from a deployment's thread (pure).

A person approves or aborts by clicking a button on the approval message (the click
handler writes a decision record into the thread, so it works whichever replica the
click reaches), by reacting 👍 to the approval message, or by replying `approve` /
`abort` in the thread. The waiting replica reads the thread and takes the first
decision by someone allowed; the others are refused visibly, once each.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

APPROVE_ACTION = "approve"  # Block Kit action_id of the buttons
ABORT_ACTION = "abort"
THUMBS_UP = ("+1", "thumbsup")

_CLICK = re.compile(
    r"^:point_right: <@(?P<user>[UW][A-Z0-9]+)> clicked \*(?P<verb>approve|abort)\*"
)


@dataclass(frozen=True)
class Decision:
    user: str
    verb: str  # "approve" or "abort"
    source: str  # "button", "reaction" or "reply"
    key: str  # identifies it, so each is judged (and refused) once

    def __str__(self) -> str:
        return f"{self.verb} by <@{self.user}> ({self.source})"


def click_text(user: str, verb: str) -> str:
    """The record a replica writes when a button is clicked (read back by `decisions`)."""
    return f":point_right: <@{user}> clicked *{verb}*"


def decisions(
    messages: list[dict[str, Any]],
    since_ts: str,
    fleet: set[str],
    command_of: Callable[[str], str | None],
    reactions_on: str | None = None,
) -> list[Decision]:
    """Decisions in the thread after `since_ts`, oldest first. `command_of(text)` is the
    verb of a reply addressed to Troupe (None when it is not a command). Reactions on
    the message `reactions_on` (the approval message) count as approvals."""
    found: list[Decision] = []
    for message in messages:
        ts = str(message.get("ts", ""))
        if ts == reactions_on:
            found += _reactions(message)
        if ts <= since_ts:
            continue
        user = message.get("user", "")
        text = message.get("text", "")
        click = _CLICK.match(text)
        if user in fleet and click:
            found.append(Decision(click["user"], click["verb"], "button", f"button:{ts}"))
        elif user not in fleet and command_of(text) in ("approve", "abort"):
            found.append(Decision(user, str(command_of(text)), "reply", f"reply:{ts}"))
    return found


def _reactions(message: dict[str, Any]) -> list[Decision]:
    return [
        Decision(user, "approve", "reaction", f"reaction:{user}")
        for reaction in message.get("reactions", [])
        if reaction.get("name") in THUMBS_UP
        for user in reaction.get("users", [])
    ]
