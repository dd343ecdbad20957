"""pins.add as a test-and-set: the basis of the SlackMQ claim."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.conftest import ALICE, BOT_A, OPS, ServerFactory
from troupe.localslack.faults import Faults
from troupe.localslack.server import ThreadedLocalSlack


def race(api_url: str, ts: str, racers: int = 16) -> list[str]:
    """`racers` threads, each with its own real WebClient, pin one message at once."""
    gate = Barrier(racers)

    def pin(_: int) -> str:
        client = WebClient(token=BOT_A, base_url=api_url)
        gate.wait()
        try:
            client.pins_add(channel=OPS, timestamp=ts)
        except SlackApiError as exc:
            return str(exc.response["error"])
        return "ok"

    with ThreadPoolExecutor(racers) as pool:
        return list(pool.map(pin, range(racers)))


def command(api_url: str) -> str:
    client = WebClient(token=ALICE, base_url=api_url)
    return str(client.chat_postMessage(channel=OPS, text="<@U0TROUPEA> deploy")["ts"])


def test_sixteen_racers_exactly_one_wins(server: ThreadedLocalSlack) -> None:
    outcomes = race(server.api_url, command(server.api_url))
    assert sorted(outcomes) == ["already_pinned"] * 15 + ["ok"]


def test_non_atomic_pins_can_let_several_win(make_server: ServerFactory) -> None:
    """With the fault on, localslack behaves like a server without compare-and-set,
    so the claim protocol can be tested against it."""
    server = make_server(faults=Faults(non_atomic_pins_ms=300))
    outcomes = race(server.api_url, command(server.api_url), racers=4)
    assert outcomes.count("ok") >= 2
    pins = server.call(lambda: server.server.store.channels[OPS].pins)
    assert len(pins) == 1  # still one pin on the message, whoever wrote it last


def test_pins_add_fault_injected_while_running(
    server: ThreadedLocalSlack, client_for: Callable[[str], WebClient]
) -> None:
    url = server.url + "/admin/faults"
    fault = {"errors": [{"method": "pins.add", "error": "internal_error", "count": 2}]}
    assert requests.put(url, json=fault, timeout=5).json()["ok"]
    ts = command(server.api_url)
    bot = client_for(BOT_A)
    failures = []
    for _ in range(2):
        try:
            bot.pins_add(channel=OPS, timestamp=ts)
        except SlackApiError as exc:
            failures.append(exc.response["error"])
    assert failures == ["internal_error", "internal_error"]
    assert bot.pins_add(channel=OPS, timestamp=ts)["ok"]  # the fault was used up
    calls = requests.get(server.url + "/admin/calls", timeout=5).json()
    assert calls["pins.add"] == {"internal_error": 2, "ok": 1}
