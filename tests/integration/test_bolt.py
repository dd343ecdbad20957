"""A real slack_bolt App against localslack, over Socket Mode and over HTTP:
it gets an app_mention, replies in the thread, and handles a button click."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from slack_bolt import Ack, App, Respond, Say
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from tests.conftest import ALICE, APP_A, BOT_A, OPS, ServerFactory
from tests.integration.helpers import wait_for
from tests.integration.test_http_events import http_workspace
from troupe.localslack.server import ThreadedLocalSlack

BUTTONS: list[dict[str, Any]] = [
    {"type": "section", "block_id": "plan", "text": {"type": "mrkdwn", "text": "Deploy web?"}},
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": "deploy-1",
                "style": "primary",
            },
            {
                "type": "button",
                "action_id": "abort",
                "text": {"type": "plain_text", "text": "Abort"},
                "value": "deploy-1",
            },
        ],
    },
]


def bolt_app(api_url: str, signing_secret: str = "unused-in-socket-mode") -> App:
    app = App(client=WebClient(token=BOT_A, base_url=api_url), signing_secret=signing_secret)

    @app.event("app_mention")
    def mention(event: dict[str, Any], say: Say) -> None:
        say(text=f"on it: {event['text']}", thread_ts=event["ts"])
        say(text="Approve?", blocks=BUTTONS, thread_ts=event["ts"])

    @app.event("message")
    def ignore_messages() -> None:
        pass  # acked, so localslack does not redeliver it

    @app.action("approve")
    def approve(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        respond(text=f"approved by <@{body['user']['id']}>", replace_original=True)

    return app


def run_scenario(server: ThreadedLocalSlack) -> None:
    alice = WebClient(token=ALICE, base_url=server.api_url)
    ts = alice.chat_postMessage(channel=OPS, text="<@U0TROUPEA> deploy web")["ts"]

    def thread() -> list[dict[str, Any]]:
        return list(alice.conversations_replies(channel=OPS, ts=ts)["messages"][1:])

    replies = wait_for(lambda: len(thread()) == 2 and thread(), what="two replies in the thread")
    assert replies[0]["text"] == "on it: <@U0TROUPEA> deploy web"
    assert replies[0]["user"] == "U0TROUPEA"
    button_ts = replies[1]["ts"]
    alice.api_call(
        "localslack.click", json={"channel": OPS, "ts": button_ts, "action_id": "approve"}
    )
    wait_for(
        lambda: thread()[1]["text"] == "approved by <@U0ALICE>",
        what="respond() to replace the original message",
    )

    def clicks() -> list[tuple[str, str]]:
        deliveries = server.call(lambda: server.server.log.list("A0TROUPEA"))
        return [(d["label"], d["state"]) for d in deliveries if d["type"] == "interactive"]

    wait_for(lambda: clicks() == [("block_actions", "delivered")], what="the click to be acked")


def test_bolt_over_socket_mode(server: ThreadedLocalSlack) -> None:
    handler = SocketModeHandler(bolt_app(server.api_url), APP_A)
    handler.connect()  # type: ignore[no-untyped-call]
    try:
        run_scenario(server)
    finally:
        handler.close()  # type: ignore[no-untyped-call]


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def wsgi_port() -> Iterator[Callable[[App], None]]:
    """Serve a bolt App over HTTP (its WSGI adapter) on a free loopback port."""
    holder: dict[str, Any] = {}
    httpd = make_server("127.0.0.1", 0, lambda e, s: holder["app"](e, s), handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def mount(app: App) -> None:
        holder["app"] = SlackRequestHandler(app)

    mount.port = httpd.server_address[1]  # type: ignore[attr-defined]
    yield mount
    httpd.shutdown()


def test_bolt_over_http(make_server: ServerFactory, wsgi_port: Callable[[App], None]) -> None:
    port = wsgi_port.port  # type: ignore[attr-defined]
    server = make_server(http_workspace(f"http://127.0.0.1:{port}/slack/events"))
    wsgi_port(bolt_app(server.api_url, signing_secret="s3cr3t-a"))
    run_scenario(server)
    attempts = [a for d in server.call(lambda: server.server.log.list()) for a in d["attempts"]]
    assert all(a["outcome"] == "ok" for a in attempts)  # signatures passed bolt's check


def test_bolt_over_http_refuses_a_wrong_signature(
    make_server: ServerFactory, wsgi_port: Callable[[App], None]
) -> None:
    port = wsgi_port.port  # type: ignore[attr-defined]
    server = make_server(http_workspace(f"http://127.0.0.1:{port}/slack/events"))
    wsgi_port(bolt_app(server.api_url, signing_secret="not-the-secret"))
    WebClient(token=ALICE, base_url=server.api_url).chat_postMessage(channel=OPS, text="hi")
    failed = wait_for(
        lambda: [
            d for d in server.call(lambda: server.server.log.list()) if d["state"] == "failed"
        ],
        what="the delivery to be refused",
    )
    assert failed[0]["attempts"][0]["outcome"] == "http_401"
