"""Slack's rate-limit tiers as token buckets (pure; the clock is passed in).

A bucket is kept per (token owner, method) — the owner is the app for bot and
app-level tokens, the person for user tokens — and, for chat.postMessage, per
channel too, as Slack counts it. A bucket starts full, so a client may spend a
tier's whole minute budget in a burst and then gets one call per refill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    per_minute: float
    burst: float
    per_channel: bool = False


TIERS = {
    # Tier 1 says "1+ per minute, short bursts allowed"; a burst of 10 lets one app open its
    # ten Socket Mode connections at once (apps.connections.open is Tier 1).
    1: Limit(1, 10),
    2: Limit(20, 20),
    3: Limit(50, 50),
    4: Limit(100, 100),
}

# Methods with their own budgets (Slack's "special" tier); others fall back to METHOD_TIER.
SPECIAL = {
    "chat.postMessage": Limit(60, 5, per_channel=True),  # ~1 message/s per channel
    "auth.test": Limit(600, 100),
}

# From Slack's per-method tiers (see shared/slack/spec/java-sdk_rate_limit_tiers.json).
METHOD_TIER = {
    "apps.connections.open": 1,
    "pins.add": 2,
    "pins.remove": 2,
    "pins.list": 2,
    "reactions.remove": 2,
    "conversations.list": 2,
    "chat.update": 3,
    "chat.delete": 3,
    "reactions.add": 3,
    "reactions.get": 3,
    "conversations.history": 3,
    "conversations.replies": 3,
    "conversations.info": 3,
    "conversations.join": 3,
    "chat.postEphemeral": 4,
    "users.info": 4,
}
DEFAULT_TIER = 3


def limit_for(method: str) -> Limit:
    return SPECIAL.get(method) or TIERS[METHOD_TIER.get(method, DEFAULT_TIER)]


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Decides whether a call is allowed; `scale` multiplies every refill rate (0 = off)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}

    def check(self, owner: str, method: str, channel: str | None, now: float) -> float:
        """Spend one call; return 0 if allowed, else the whole seconds to wait (Retry-After)."""
        if self.scale <= 0:
            return 0
        limit = limit_for(method)
        key = (owner, method, (channel or "") if limit.per_channel else "")
        bucket = self._buckets.setdefault(key, _Bucket(limit.burst, now))
        rate = limit.per_minute * self.scale / 60
        bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        # Retry-After is an integer on Slack (slack_sdk's retry handler int()s it): round up.
        return max(1, math.ceil((1 - bucket.tokens) / rate))
