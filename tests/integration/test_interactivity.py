"""A person's button click becomes block_actions for the app; response_url works."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.conftest import ALICE, APP_A, BOT_A, BOT_B, OPS
from tests.integration.helpers import Inbox, wait_for
from tests.integration.test_bolt import BUTTONS
from troupe.localslack.server import ThreadedLocalSlack

Clients = Callable[[str], WebClient]


@pytest.fixture
def clicked(
    server: ThreadedLocalSlack, client_for: Clients
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Bot A posts buttons, Alice clicks Approve; yields (message ts, block_actions payload)."""
    box = Inbox(server.api_url, APP_A, BOT_A).connect()
    try:
        ts = client_for(BOT_A).chat_postMessage(channel=OPS, text="Approve?", blocks=BUTTONS)["ts"]
        client_for(ALICE).api_call(
            "localslack.click", json={"channel": OPS, "ts": ts, "action_id": "approve"}
        )
        request = wait_for(
            lambda: next((r for r in box.requests if r.type == "interactive"), None),
            what="the interactive envelope",
        )
        yield ts, request.payload
    finally:
        box.close()


def test_block_actions_payload(clicked: tuple[str, dict[str, Any]]) -> None:
    ts, payload = clicked
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U0ALICE"
    assert payload["api_app_id"] == "A0TROUPEA"
    assert payload["container"] == {
        "type": "message",
        "message_ts": ts,
        "channel_id": OPS,
        "is_ephemeral": False,
    }
    action = payload["actions"][0]
    assert (action["action_id"], action["block_id"], action["value"]) == (
        "approve",
        "decide",
        "deploy-1",
    )
    assert payload["message"]["ts"] == ts


def test_response_url_posts_in_thread_then_is_used_up(
    clicked: tuple[str, dict[str, Any]], client_for: Clients
) -> None:
    ts, payload = clicked
    url = payload["response_url"]
    body = {"text": "approved", "response_type": "in_channel", "thread_ts": ts}
    answers = [requests.post(url, json=body, timeout=5) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [404]
    assert answers[5].json()["error"] == "used_url"
    thread = client_for(ALICE).conversations_replies(channel=OPS, ts=ts)["messages"]
    assert [m["text"] for m in thread[1:]] == ["approved"] * 5
    assert thread[1]["user"] == "U0TROUPEA"  # posted as the app's bot


def test_response_url_delete_original(
    clicked: tuple[str, dict[str, Any]], client_for: Clients
) -> None:
    _, payload = clicked
    assert requests.post(payload["response_url"], json={"delete_original": True}, timeout=5).ok
    assert client_for(ALICE).conversations_history(channel=OPS)["messages"] == []


def test_bad_response_url_and_bad_clicks(server: ThreadedLocalSlack, client_for: Clients) -> None:
    gone = requests.post(f"{server.url}/actions/nope", json={"text": "x"}, timeout=5)
    assert gone.status_code == 404 and gone.json()["error"] == "expired_url"
    ts = client_for(BOT_A).chat_postMessage(channel=OPS, text="Approve?", blocks=BUTTONS)["ts"]
    alice = client_for(ALICE)
    with pytest.raises(SlackApiError) as missing:
        alice.api_call("localslack.click", json={"channel": OPS, "ts": ts, "action_id": "nope"})
    assert missing.value.response["error"] == "action_not_found"
    with pytest.raises(SlackApiError) as bot:
        client_for(BOT_B).api_call(
            "localslack.click", json={"channel": OPS, "ts": ts, "action_id": "approve"}
        )
    assert bot.value.response["error"] == "not_allowed_token_type"  # only people click
