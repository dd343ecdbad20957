"""The seed-compatible facade: SlackMQ(client, channel, ts).ack() / .heartbeat() / .unack()."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from slack_sdk import WebClient

from tests.conftest import ALICE, BOT_A, BOT_B, OPS
from troupe.chat import TransientErrorRetryHandler, retry_handlers
from troupe.claims import ClaimLost, Lease
from troupe.localslack.server import ThreadedLocalSlack
from troupe.slackmq import SlackMQ

FLEET = {"U0TROUPEA", "U0TROUPEB"}
FAST = Lease(settle=0.05)


def command(client_for: Callable[[str], WebClient]) -> str:
    return str(client_for(ALICE).chat_postMessage(channel=OPS, text="deploy web")["ts"])


def ack_both(first: SlackMQ, second: SlackMQ) -> list[bool]:
    gate = Barrier(2, timeout=10)

    def ack(mq: SlackMQ) -> bool:
        gate.wait()
        return mq.ack()

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(ack, (first, second)))


def test_two_replicas_one_ack_then_done_for_good(
    server: ThreadedLocalSlack, client_for: Callable[[str], WebClient]
) -> None:
    ts = command(client_for)
    a = SlackMQ(client_for(BOT_A), OPS, ts, replica="troupe-a", fleet=FLEET, lease=FAST)
    b = SlackMQ(client_for(BOT_B), OPS, ts, replica="troupe-b", fleet=FLEET, lease=FAST)
    assert sorted(ack_both(a, b)) == [False, True]
    owner, other = (a, b) if a.claim is not None else (b, a)
    owner.heartbeat()
    assert owner.ack()  # still ours
    owner.unack()
    alice = client_for(ALICE)
    parent = alice.conversations_replies(channel=OPS, ts=ts)["messages"][0]
    bot = "U0TROUPEA" if owner is a else "U0TROUPEB"
    assert parent["reactions"] == [{"name": "white_check_mark", "users": [bot], "count": 1}]
    assert "pinned_to" not in parent
    assert alice.pins_list(channel=OPS)["items"] == []
    assert not other.ack()  # done is permanent: unlike the seed, unack does not reopen it
    late = SlackMQ(client_for(BOT_A), OPS, ts, replica="troupe-a2", fleet=FLEET, lease=FAST)
    assert not late.ack()


def test_defaults_fit_replicas_sharing_one_app(
    server: ThreadedLocalSlack, client_for: Callable[[str], WebClient]
) -> None:
    """replica and fleet default to the bot user of the client (auth.test)."""
    ts = command(client_for)
    first = SlackMQ(client_for(BOT_A), OPS, ts, lease=FAST)
    second = SlackMQ(client_for(BOT_A), OPS, ts, lease=FAST)
    assert (first.replica, first.claimer.fleet) == ("U0TROUPEA", {"U0TROUPEA"})
    assert sorted(ack_both(first, second)) == [False, True]
    winner = first if first.claim is not None else second
    winner.unack(ok=False, summary="rolled back")
    replies = client_for(ALICE).conversations_replies(channel=OPS, ts=ts)["messages"]
    assert replies[-1]["text"] == ":x: failed · rolled back"
    assert [r["name"] for r in replies[0]["reactions"]] == ["x"]
    assert not SlackMQ(client_for(BOT_A), OPS, ts, lease=FAST).ack()


def test_unack_without_a_claim_raises(
    server: ThreadedLocalSlack, client_for: Callable[[str], WebClient]
) -> None:
    ts = command(client_for)
    owner = SlackMQ(client_for(BOT_A), OPS, ts, fleet=FLEET, lease=FAST)
    other = SlackMQ(client_for(BOT_B), OPS, ts, fleet=FLEET, lease=FAST)
    assert owner.ack()
    assert not other.ack()
    with pytest.raises(ClaimLost):
        other.unack()  # the seed would have removed the owner's pin
    with pytest.raises(ClaimLost):
        other.heartbeat()
    assert client_for(ALICE).pins_list(channel=OPS)["items"][0]["message"]["ts"] == ts


def test_retry_handlers_are_added_once(
    server: ThreadedLocalSlack, client_for: Callable[[str], WebClient]
) -> None:
    client = client_for(BOT_A)  # slack_sdk's default: one retry of a dropped connection
    before = len(client.retry_handlers)
    ts = command(client_for)
    SlackMQ(client, OPS, ts, replica="troupe-a", fleet=FLEET)
    SlackMQ(client, OPS, ts, replica="troupe-a", fleet=FLEET)
    added = [h for h in client.retry_handlers if isinstance(h, TransientErrorRetryHandler)]
    assert len(added) == 1
    assert len(client.retry_handlers) == before + len(retry_handlers())
