"""troupe.localslack.ratelimit: Slack's tiers as token buckets, on a fake clock."""

from __future__ import annotations

import pytest

from troupe.localslack.ratelimit import SPECIAL, TIERS, Limit, RateLimiter, limit_for

APP_A, APP_B = "A0TROUPEA", "A0TROUPEB"
OPS, DEPLOYS = "C0OPS00001", "C0DEPLOYS1"
T0 = 1000.0


def spend(
    limiter: RateLimiter,
    n: int,
    method: str = "pins.add",
    owner: str = APP_A,
    channel: str | None = OPS,
    now: float = T0,
) -> list[float]:
    return [limiter.check(owner, method, channel, now) for _ in range(n)]


# ---- tiers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("pins.add", Limit(20, 20)),
        ("pins.remove", Limit(20, 20)),
        ("pins.list", Limit(20, 20)),
        ("reactions.add", Limit(50, 50)),
        ("conversations.history", Limit(50, 50)),
        ("users.info", Limit(100, 100)),
        ("apps.connections.open", Limit(1, 10)),
        ("chat.postMessage", Limit(60, 5, per_channel=True)),
        ("auth.test", Limit(600, 100)),
        ("some.newMethod", Limit(50, 50)),  # unknown methods are Tier 3
    ],
)
def test_limit_for(method: str, expected: Limit) -> None:
    assert limit_for(method) == expected


def test_tier_budgets_match_slack() -> None:
    assert {t: lim.per_minute for t, lim in TIERS.items()} == {1: 1, 2: 20, 3: 50, 4: 100}
    assert SPECIAL["chat.postMessage"].per_channel


# ---- spending and refilling ----------------------------------------------------------------


def test_tier2_allows_twenty_then_asks_to_wait() -> None:
    limiter = RateLimiter()

    assert spend(limiter, 20) == [0] * 20
    wait = limiter.check(APP_A, "pins.add", OPS, T0)

    assert isinstance(wait, int)
    assert wait == 3  # 20/min refills one call every 3 s


def test_retry_after_is_a_positive_integer_after_a_partial_refill() -> None:
    limiter = RateLimiter()
    spend(limiter, 20)

    wait = limiter.check(APP_A, "pins.add", OPS, T0 + 1.2)  # 0.4 of a call refilled

    assert isinstance(wait, int)
    assert wait == 2  # 1.8 s left, rounded up


def test_refill_over_time() -> None:
    limiter = RateLimiter()
    spend(limiter, 20)

    assert limiter.check(APP_A, "pins.add", OPS, T0 + 2.9) > 0
    assert limiter.check(APP_A, "pins.add", OPS, T0 + 3.01) == 0
    assert limiter.check(APP_A, "pins.add", OPS, T0 + 3.01) > 0
    assert limiter.check(APP_A, "pins.add", OPS, T0 + 6.02) == 0


@pytest.mark.parametrize("method", ["pins.add", "reactions.add", "chat.postMessage"])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.4, 0.97])
def test_waiting_exactly_retry_after_is_enough(method: str, fraction: float) -> None:
    limiter = RateLimiter()
    while limiter.check(APP_A, method, OPS, T0) == 0:
        pass
    after = fraction * 60 / limit_for(method).per_minute  # part of one refill period

    wait = limiter.check(APP_A, method, OPS, T0 + after)

    assert wait >= 1
    assert limiter.check(APP_A, method, OPS, T0 + after + wait) == 0


def test_refill_stops_at_the_burst() -> None:
    limiter = RateLimiter()
    spend(limiter, 20)

    later = T0 + 3600  # an hour idle refills only the 20-call burst
    assert spend(limiter, 20, now=later) == [0] * 20
    assert limiter.check(APP_A, "pins.add", OPS, later) > 0


def test_refused_calls_do_not_spend() -> None:
    limiter = RateLimiter()
    spend(limiter, 20)
    for _ in range(10):
        limiter.check(APP_A, "pins.add", OPS, T0 + 1)

    assert limiter.check(APP_A, "pins.add", OPS, T0 + 3) == 0


# ---- isolation -----------------------------------------------------------------------------


def test_budgets_are_per_owner() -> None:
    limiter = RateLimiter()
    spend(limiter, 20, owner=APP_A)

    assert limiter.check(APP_A, "pins.add", OPS, T0) > 0
    assert spend(limiter, 20, owner=APP_B) == [0] * 20


def test_budgets_are_per_method() -> None:
    limiter = RateLimiter()
    spend(limiter, 20, method="pins.add")

    assert limiter.check(APP_A, "pins.add", OPS, T0) > 0
    assert spend(limiter, 20, method="pins.remove") == [0] * 20


def test_post_message_budget_is_per_channel() -> None:
    limiter = RateLimiter()

    assert spend(limiter, 5, method="chat.postMessage", channel=OPS) == [0] * 5
    assert limiter.check(APP_A, "chat.postMessage", OPS, T0) == 1  # one message a second
    assert spend(limiter, 5, method="chat.postMessage", channel=DEPLOYS) == [0] * 5


def test_other_methods_ignore_the_channel() -> None:
    limiter = RateLimiter()
    spend(limiter, 20, method="pins.add", channel=OPS)

    assert limiter.check(APP_A, "pins.add", DEPLOYS, T0) > 0
    assert limiter.check(APP_A, "pins.add", None, T0) > 0


# ---- scale -----------------------------------------------------------------------------------


def test_scale_zero_disables_limits() -> None:
    limiter = RateLimiter(scale=0)

    assert set(spend(limiter, 1000)) == {0}
    assert set(spend(limiter, 1000, method="apps.connections.open")) == {0}


def test_scale_speeds_up_refill() -> None:
    normal, fast = RateLimiter(scale=1), RateLimiter(scale=10)
    spend(normal, 20)
    spend(fast, 20)

    assert fast.check(APP_A, "pins.add", OPS, T0) == 1  # 200/min: ceil(0.3 s)
    assert fast.check(APP_A, "pins.add", OPS, T0 + 0.31) == 0
    assert normal.check(APP_A, "pins.add", OPS, T0 + 0.31) == 3


def test_scale_does_not_change_the_burst() -> None:
    limiter = RateLimiter(scale=10)

    assert spend(limiter, 20) == [0] * 20
    assert limiter.check(APP_A, "pins.add", OPS, T0) > 0


def test_tier1_connections_open_waits_a_minute() -> None:
    limiter = RateLimiter()

    assert spend(limiter, 10, method="apps.connections.open", channel=None) == [0] * 10
    assert limiter.check(APP_A, "apps.connections.open", None, T0) == 60
