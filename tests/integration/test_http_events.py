"""Events API over HTTP: signed with v0, retried on failure, `x-slack-no-retry` honoured."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from tests.conftest import ALICE, OPS, ServerFactory
from tests.integration.helpers import wait_for
from troupe.localslack.server import ThreadedLocalSlack
from troupe.localslack.workspace import HttpDelivery, Workspace, default_workspace


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """A plain HTTP server standing in for an app's Request URL."""

    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    no_retry: bool = False
    stalls: list[float] = field(default_factory=list)  # seconds to wait before answering
    got: list[Received] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append(Received(body, {k.lower(): v for k, v in self.headers.items()}))
                if receiver.stalls:
                    time.sleep(receiver.stalls.pop(0))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if receiver.no_retry:
                    self.send_header("x-slack-no-retry", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}/slack/events"
    httpd.shutdown()


def http_workspace(url: str) -> Workspace:
    base = default_workspace()
    app = base.apps[0].model_copy(update={"delivery": HttpDelivery.model_validate({"http": url})})
    return base.model_copy(update={"apps": [app]})


def post(server: ThreadedLocalSlack, text: str) -> None:
    WebClient(token=ALICE, base_url=server.api_url).chat_postMessage(channel=OPS, text=text)


def test_delivery_is_signed_so_slack_sdk_verifies_it(
    make_server: ServerFactory, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    server = make_server(http_workspace(url))
    post(server, "signed")
    wait_for(lambda: state.got, what="a delivery")
    got = state.got[0]
    assert SignatureVerifier("s3cr3t-a").is_valid_request(got.body, got.headers)
    assert not SignatureVerifier("wrong-secret").is_valid_request(got.body, got.headers)
    payload = json.loads(got.body)
    assert (payload["type"], payload["event"]["text"]) == ("event_callback", "signed")
    assert "x-slack-retry-num" not in got.headers


def test_a_500_is_retried_with_retry_headers(
    make_server: ServerFactory, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.statuses = [500, 500]
    server = make_server(http_workspace(url))
    post(server, "retry me")
    wait_for(lambda: len(state.got) >= 3, what="two retries")
    nums = [g.headers.get("x-slack-retry-num") for g in state.got]
    reasons = {g.headers.get("x-slack-retry-reason") for g in state.got[1:]}
    assert nums == [None, "1", "2"] and reasons == {"http_error"}
    event_ids = {json.loads(g.body)["event_id"] for g in state.got}
    assert len(event_ids) == 1  # the same event, so the app can deduplicate
    deliveries = wait_for(
        lambda: [
            d for d in server.call(lambda: server.server.log.list()) if d["state"] != "pending"
        ],
        what="the delivery to settle",
    )
    assert deliveries[0]["state"] == "delivered"


def test_x_slack_no_retry_stops_retries(
    make_server: ServerFactory, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.statuses, state.no_retry = [500], True
    server = make_server(http_workspace(url))
    post(server, "do not retry")
    failed = wait_for(
        lambda: [
            d for d in server.call(lambda: server.server.log.list()) if d["state"] == "failed"
        ],
        what="the delivery to fail",
    )
    assert len(failed[0]["attempts"]) == 1 and len(state.got) == 1


def test_unreachable_receiver_is_retried_then_given_up(make_server: ServerFactory) -> None:
    server = make_server(http_workspace("http://127.0.0.1:9/slack/events"))  # discard port
    post(server, "nobody home")
    failed = wait_for(
        lambda: [
            d for d in server.call(lambda: server.server.log.list()) if d["state"] == "failed"
        ],
        what="all retries to fail",
    )
    assert [a["outcome"] for a in failed[0]["attempts"]] == ["connection_failed"] * 4


def test_a_slow_receiver_times_out_and_is_retried(
    make_server: ServerFactory, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.stalls = [1.5]  # longer than the server's http_timeout (1 s in tests, 3 s on Slack)
    server = make_server(http_workspace(url))
    post(server, "slow")
    wait_for(lambda: len(state.got) >= 2, what="a retry after the timeout")
    assert state.got[1].headers["x-slack-retry-reason"] == "http_timeout"
    settled = wait_for(
        lambda: [
            d for d in server.call(lambda: server.server.log.list()) if d["state"] != "pending"
        ],
        what="the delivery to settle",
    )
    assert [a["outcome"] for a in settled[0]["attempts"]] == ["http_timeout", "ok"]
