"""The admin endpoints: inspection and fault injection while the server runs."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.conftest import ALICE, APP_A, BOT_A, OPS
from troupe.localslack.server import ThreadedLocalSlack

Clients = Callable[[str], WebClient]


def admin(server: ThreadedLocalSlack, path: str) -> object:
    return requests.get(f"{server.url}/admin/{path}", timeout=5).json()


def put_faults(server: ThreadedLocalSlack, faults: dict[str, object]) -> None:
    reply = requests.put(f"{server.url}/admin/faults", json=faults, timeout=5).json()
    assert reply["ok"], reply


def test_inspection_lists_what_happened(server: ThreadedLocalSlack, client_for: Clients) -> None:
    alice, bot = client_for(ALICE), client_for(BOT_A)
    ts = alice.chat_postMessage(channel=OPS, text="deploy")["ts"]
    reply = bot.chat_postMessage(channel=OPS, text="claimed", thread_ts=ts)["ts"]
    bot.pins_add(channel=OPS, timestamp=ts)
    bot.reactions_add(channel=OPS, timestamp=ts, name="eyes")
    channels = admin(server, "channels")
    assert channels == [
        {
            "id": OPS,
            "name": "ops",
            "members": ["U0ALICE", "U0TROUPEA", "U0TROUPEB", "U0TROUPEC"],
            "messages": 2,
            "pins": 1,
        }
    ]
    thread = admin(server, f"messages?channel={OPS}&thread_ts={ts}")
    assert [m["ts"] for m in thread] == [ts, reply]  # type: ignore[attr-defined]
    assert admin(server, "pins") == [
        {
            "channel": OPS,
            "ts": ts,
            "created": pytest.approx(time.time(), abs=60),
            "created_by": "U0TROUPEA",
        }
    ]
    assert admin(server, "reactions") == [
        {"channel": OPS, "ts": ts, "name": "eyes", "users": ["U0TROUPEA"]}
    ]
    calls = admin(server, "calls")
    assert calls["chat.postMessage"] == {"ok": 2}  # type: ignore[index]
    deliveries = admin(server, "deliveries?app_id=A0TROUPEB")
    labels = [d["label"] for d in deliveries]  # type: ignore[attr-defined]
    assert labels == ["message", "message", "pin_added", "reaction_added"]
    assert admin(server, "connections") == {"A0TROUPEA": 0, "A0TROUPEB": 0, "A0TROUPEC": 0}


def test_http_5xx_and_service_unavailable(server: ThreadedLocalSlack, client_for: Clients) -> None:
    put_faults(server, {"errors": [{"method": "*", "error": "service_unavailable", "status": 503}]})
    with pytest.raises(SlackApiError) as info:
        client_for(BOT_A).auth_test()
    assert info.value.response.status_code == 503
    assert info.value.response["error"] == "service_unavailable"
    put_faults(server, {})
    assert client_for(BOT_A).auth_test()["ok"]


def test_added_latency_slows_every_call(server: ThreadedLocalSlack, client_for: Clients) -> None:
    put_faults(server, {"latency_ms": 200})
    started = time.monotonic()
    client_for(BOT_A).auth_test()
    assert time.monotonic() - started >= 0.2  # a lower bound: a busy machine only adds


def test_bad_fault_document_is_refused(server: ThreadedLocalSlack) -> None:
    reply = requests.put(
        f"{server.url}/admin/faults", json={"latency_ms": -1, "oops": True}, timeout=5
    )
    assert reply.status_code == 400 and reply.json()["ok"] is False
    assert admin(server, "faults") == {"errors": [], "latency_ms": 0.0, "non_atomic_pins_ms": 0.0}


def test_rate_limits_switch_while_running(server: ThreadedLocalSlack, client_for: Clients) -> None:
    url = f"{server.url}/admin/rate-limits"
    assert requests.put(url, json={"scale": 1}, timeout=5).json()["ok"]
    bot = client_for(BOT_A)
    codes = []
    for _ in range(25):
        try:
            bot.pins_list(channel=OPS)
            codes.append(200)
        except SlackApiError as exc:
            codes.append(exc.response.status_code)
    assert codes[:20] == [200] * 20 and codes[20:] == [429] * 5
    assert requests.put(url, json={"scale": "fast"}, timeout=5).status_code == 400


def test_websocket_ping_gets_a_pong_with_the_same_payload(server: ThreadedLocalSlack) -> None:
    url = WebClient(base_url=server.api_url).apps_connections_open(app_token=APP_A)["url"]

    async def ping() -> bytes:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, autoping=False) as ws,
        ):
            await ws.receive()  # hello
            await ws.ping(b"session:1700000000.0")
            frame = await ws.receive()
            assert frame.type == aiohttp.WSMsgType.PONG
            return bytes(frame.data)

    assert server.run(ping()) == b"session:1700000000.0"


def test_a_frame_that_is_not_an_object_does_not_kill_the_socket(server: ThreadedLocalSlack) -> None:
    url = WebClient(base_url=server.api_url).apps_connections_open(app_token=APP_A)["url"]

    async def send_junk() -> bool:
        session = aiohttp.ClientSession()
        async with session, session.ws_connect(url, autoping=False) as ws:
            await ws.receive()  # hello
            await ws.send_str("[1]")
            await ws.send_str("not json")
            await ws.ping(b"alive?")
            frame = await ws.receive(timeout=5)
            return frame.type == aiohttp.WSMsgType.PONG  # still served after the junk

    assert server.run(send_junk())
