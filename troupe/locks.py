"""Environment locks (pure): a lock is a pinned message by a fleet bot, so it lives in
Slack like the claims do and survives any replica's restart.

    :closed_lock_with_key: *web* locked by <@U0ALICE> until 2026-11-28T12:00:00Z · db migration

`until forever` when no duration was given. An expired lock is no lock (it is unpinned
by whoever notices). The text is written and read here, so the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_LOCK = re.compile(
    r"^:closed_lock_with_key: \*(?P<env>[^*]+)\* locked by <@(?P<owner>[UW][A-Z0-9]+)> "
    r"until (?P<until>forever|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)(?: · (?P<reason>.*))?$",
    re.S,
)


@dataclass(frozen=True)
class Lock:
    env: str
    owner: str  # Slack user ID
    until: float | None  # epoch seconds; None: until unlocked
    reason: str | None
    ts: str  # the lock message

    def expired(self, now: float) -> bool:
        return self.until is not None and self.until <= now

    def blocks(self, user: str, now: float) -> bool:
        """Whether it stops `user` from deploying there (its owner may go ahead)."""
        return not self.expired(now) and user != self.owner


def lock_text(env: str, owner: str, until: float | None, reason: str | None) -> str:
    stamp = "forever" if until is None else _stamp(until)
    return f":closed_lock_with_key: *{env}* locked by <@{owner}> until {stamp}" + (
        f" · {reason}" if reason else ""
    )


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_lock(message: dict[str, Any], fleet: set[str]) -> Lock | None:
    if message.get("user") not in fleet:
        return None  # anyone can pin a message that looks like a lock: only ours count
    match = _LOCK.match(message.get("text", ""))
    if match is None:
        return None
    until = None
    if match["until"] != "forever":
        until = datetime.strptime(match["until"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return Lock(
        match["env"],
        match["owner"],
        until.timestamp() if until else None,
        match["reason"],
        str(message["ts"]),
    )


def read_locks(pinned: Iterable[dict[str, Any]], fleet: set[str]) -> list[Lock]:
    """Every lock among the pinned messages (expired ones too: the caller unpins them)."""
    return [lock for m in pinned if (lock := read_lock(m, fleet)) is not None]


def lock_on(locks: Iterable[Lock], env: str, now: float) -> Lock | None:
    """The live lock on `env`, if any (the oldest, if two replicas raced to lock it)."""
    live = [lock for lock in locks if lock.env == env and not lock.expired(now)]
    return min(live, key=lambda lock: lock.ts) if live else None
