"""Rate limits by Slack's tiers: 429 + Retry-After, and slack_sdk's retry handler."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from tests.conftest import ALICE, BOT_A, BOT_B, OPS, ServerFactory


def test_exhausting_a_tier_2_method_gives_429_then_retry_handler_succeeds(
    make_server: ServerFactory,
) -> None:
    # Scale 10: Slack's budgets refill ten times faster, so Retry-After is 1 s, not 3 s.
    server = make_server(rate_limit_scale=10)
    bot = WebClient(token=BOT_A, base_url=server.api_url)
    for _ in range(20):  # Tier 2: 20 per minute
        assert bot.pins_list(channel=OPS)["ok"]
    try:
        bot.pins_list(channel=OPS)
        raise AssertionError("the 21st Tier-2 call should be rate limited")
    except SlackApiError as exc:
        assert exc.response.status_code == 429
        assert exc.response["error"] == "ratelimited"
        assert int(exc.response.headers["Retry-After"]) >= 1
    # Another app has its own budget; the same app's other methods too.
    assert WebClient(token=BOT_B, base_url=server.api_url).pins_list(channel=OPS)["ok"]
    assert bot.auth_test()["ok"]
    patient = WebClient(
        token=BOT_A,
        base_url=server.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    assert patient.pins_list(channel=OPS)["ok"]


def test_post_message_is_limited_per_channel(make_server: ServerFactory) -> None:
    server = make_server(rate_limit_scale=1)
    alice = WebClient(token=ALICE, base_url=server.api_url)
    codes = []
    for i in range(8):
        try:
            alice.chat_postMessage(channel=OPS, text=f"burst {i}")
            codes.append(200)
        except SlackApiError as exc:
            codes.append(exc.response.status_code)
    assert 429 in codes and codes[0] == 200  # a short burst, then about one per second


def test_rate_limits_can_be_switched_off(make_server: ServerFactory) -> None:
    server = make_server(rate_limit_scale=0)
    bot = WebClient(token=BOT_A, base_url=server.api_url)
    assert all(bot.pins_list(channel=OPS)["ok"] for _ in range(60))
