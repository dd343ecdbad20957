"""Socket Mode with the real slack_sdk SocketModeClient: one connection per envelope,
every app in the channel, redelivery of unacked envelopes, reconnects."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiohttp import ClientSession
from slack_sdk import WebClient

from tests.conftest import ALICE, APP_A, APP_B, BOT_A, BOT_B, OPS, ServerFactory
from tests.integration.helpers import Inbox, wait_for
from troupe.localslack.delivery import Timing
from troupe.localslack.server import ThreadedLocalSlack

InboxFactory = Callable[..., Inbox]


@pytest.fixture
def inbox(server: ThreadedLocalSlack) -> Iterator[InboxFactory]:
    opened: list[Inbox] = []

    def make(app_token: str = APP_A, bot_token: str = BOT_A, ack: bool = True) -> Inbox:
        box = Inbox(server.api_url, app_token, bot_token, ack).connect()
        opened.append(box)
        return box

    yield make
    # slack_sdk's builtin client takes ~2.5 s to join its threads on close: close in parallel.
    with ThreadPoolExecutor() as pool:
        list(pool.map(Inbox.close, opened))


def connections(server: ThreadedLocalSlack, app_id: str) -> int:
    return int(server.call(lambda: server.server.hub.connected(app_id)))


def test_each_event_goes_to_exactly_one_connection_of_an_app(
    server: ThreadedLocalSlack, inbox: InboxFactory, client_for: Callable[[str], WebClient]
) -> None:
    boxes = [inbox() for _ in range(3)]
    wait_for(lambda: connections(server, "A0TROUPEA") == 3, what="3 connections")
    alice = client_for(ALICE)
    texts = [f"message {i}" for i in range(30)]
    for text in texts:
        alice.chat_postMessage(channel=OPS, text=text)
    wait_for(lambda: sum(len(b.texts()) for b in boxes) >= 30, what="30 events")
    received = sorted(t for b in boxes for t in b.texts())
    assert received == sorted(texts)  # each exactly once across the three connections
    assert all(b.texts() for b in boxes), "round robin should reach every connection"


def test_two_apps_in_the_channel_both_receive_every_event(
    inbox: InboxFactory, client_for: Callable[[str], WebClient]
) -> None:
    a, b = inbox(APP_A, BOT_A), inbox(APP_B, BOT_B)
    client_for(ALICE).chat_postMessage(channel=OPS, text="for everyone")
    wait_for(lambda: a.texts() and b.texts(), what="both apps")
    assert a.texts() == b.texts() == ["for everyone"]
    envelope_a = a.requests[0].payload
    envelope_b = b.requests[0].payload
    assert (envelope_a["api_app_id"], envelope_b["api_app_id"]) == ("A0TROUPEA", "A0TROUPEB")
    assert envelope_a["authorizations"][0]["user_id"] == "U0TROUPEA"


def test_unacked_envelope_is_redelivered_with_retry_attempt(
    inbox: InboxFactory, client_for: Callable[[str], WebClient]
) -> None:
    silent = inbox(ack=False)
    client_for(ALICE).chat_postMessage(channel=OPS, text="ack me")
    wait_for(lambda: len(silent.requests) >= 2, what="a redelivery")
    first, second = silent.requests[0], silent.requests[1]
    assert first.envelope_id == second.envelope_id
    assert first.retry_attempt == 0
    assert second.retry_attempt is not None and second.retry_attempt >= 1
    assert second.retry_reason == "timeout"


def test_acked_envelope_is_not_redelivered(
    server: ThreadedLocalSlack, inbox: InboxFactory, client_for: Callable[[str], WebClient]
) -> None:
    box = inbox()
    client_for(ALICE).chat_postMessage(channel=OPS, text="once")
    wait_for(lambda: box.texts(), what="the event")
    mine = wait_for(
        lambda: [
            d
            for d in server.call(lambda: server.server.log.list("A0TROUPEA"))
            if d["state"] != "pending"
        ],
        what="the delivery to settle",
    )
    assert [d["state"] for d in mine] == ["delivered"]
    assert len(mine[0]["attempts"]) == 1
    assert box.texts() == ["once"]


def test_an_app_mention_reaches_only_the_mentioned_app(
    inbox: InboxFactory, client_for: Callable[[str], WebClient]
) -> None:
    a, b = inbox(APP_A, BOT_A), inbox(APP_B, BOT_B)
    client_for(ALICE).chat_postMessage(channel=OPS, text="<@U0TROUPEA> deploy web")
    wait_for(lambda: a.events("app_mention") and b.events("message"), what="events")
    assert [e["text"] for e in a.events("app_mention")] == ["<@U0TROUPEA> deploy web"]
    assert b.events("app_mention") == []


def test_eleventh_connection_is_told_too_many_websockets(server: ThreadedLocalSlack) -> None:
    web = WebClient(token=APP_A, base_url=server.api_url)
    urls = [web.apps_connections_open(app_token=APP_A)["url"] for _ in range(11)]

    async def open_many() -> list[str]:
        first_frames = []
        async with ClientSession() as session:
            sockets = []
            for url in urls:
                ws = await session.ws_connect(url)
                sockets.append(ws)
                first = json.loads((await ws.receive()).data)
                first_frames.append(first["type"] + ":" + first.get("reason", ""))
            for ws in sockets:
                await ws.close()
        return first_frames

    frames = server.run(open_many(), timeout=20)
    assert frames == ["hello:"] * 10 + ["disconnect:too_many_websockets"]


def test_clients_reconnect_after_the_server_drops_every_socket(make_server: ServerFactory) -> None:
    # Retries spaced like Slack's (immediately, later, much later), scaled down.
    server = make_server(timing=Timing(ack_timeout=0.5, retry_delays=(1.0, 8.0, 20.0)))
    box = Inbox(server.api_url, APP_A, BOT_A).connect()
    wait_for(lambda: connections(server, "A0TROUPEA") == 1, what="connection")
    dropped = server.call(server.server.hub.drop_all)
    assert dropped == 1
    WebClient(token=ALICE, base_url=server.api_url).chat_postMessage(channel=OPS, text="dropped")
    # The event is retried until the client has reconnected: nothing is lost.
    try:
        wait_for(lambda: "dropped" in box.texts(), timeout=30, what="redelivery after drop")
    finally:
        box.close()


def test_refresh_disconnect_makes_the_client_reconnect(
    server: ThreadedLocalSlack, inbox: InboxFactory, client_for: Callable[[str], WebClient]
) -> None:
    box = inbox()
    wait_for(lambda: connections(server, "A0TROUPEA") == 1, what="connection")
    before = server.call(lambda: [c.id for c in server.server.hub.conns["A0TROUPEA"]])
    server.run(server.server.hub.disconnect_all("refresh_requested"))
    wait_for(
        lambda: (
            server.call(lambda: [c.id for c in server.server.hub.conns["A0TROUPEA"]])
            not in ([], before)
        ),
        what="a new connection",
    )
    client_for(ALICE).chat_postMessage(channel=OPS, text="still here")
    wait_for(lambda: "still here" in box.texts(), what="event on the new connection")
