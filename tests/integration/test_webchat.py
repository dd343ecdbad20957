"""The web chat page's server side against a real localslack: the event stream (SSE), the
JSON views the page reads, the security headers, and the page itself in headless
Chromium (escaping, Block Kit, buttons, reactions, posting as a chosen person, live edits).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from slack_sdk import WebClient

from tests.browser import chromium, page_of, screenshot
from tests.integration.helpers import Inbox, wait_for
from troupe.localslack.server import Settings, ThreadedLocalSlack
from troupe.sandbox import sandbox_workspace

pytestmark = pytest.mark.integration

OPS = "C0OPS00001"
XSS = [
    "<img src=x onerror=\"window.__pwned='img'\">",
    "<script>window.__pwned='script'</script>",
    "&lt;b&gt;not bold&lt;/b&gt; <javascript:window.__pwned='link'|click me>",
    "*<svg onload=\"window.__pwned='svg'\">*",
]


class Stream:
    """A reader of /web/stream (HTTP/1.0 over a plain socket, so that closing it ends the
    reading thread at once), keeping the headers and every `data:` item received."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.sendall(f"GET /web/stream HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        self.file = self.sock.makefile("rb")
        self.headers = self._headers()
        self.items: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _headers(self) -> dict[str, str]:
        status = self.file.readline().decode()
        assert " 200 " in status, status
        headers = {}
        while (line := self.file.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in self.file:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    self.items.append(json.loads(line[6:]))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def stream(server: ThreadedLocalSlack) -> Iterator[Stream]:
    s = Stream(server.url)
    yield s
    s.close()


def test_stream_delivers_a_posted_message_its_edit_reaction_and_pin(
    server: ThreadedLocalSlack, stream: Stream, client_for: Callable[[str], WebClient]
) -> None:
    assert stream.headers["content-type"].startswith("text/event-stream")
    alice, bot = client_for("xoxp-alice"), client_for("xoxb-troupe-a")
    ts = alice.chat_postMessage(channel=OPS, text="troupe deploy canary version=2.0.0")["ts"]
    reply = bot.chat_postMessage(channel=OPS, thread_ts=ts, text="working")["ts"]
    bot.chat_update(channel=OPS, ts=reply, text="done")
    bot.reactions_add(channel=OPS, timestamp=ts, name="white_check_mark")
    bot.pins_add(channel=OPS, timestamp=ts)

    wanted = [
        ("message", None, ts),
        ("message", None, reply),
        ("message", "message_changed", reply),
        ("reaction_added", None, ts),
        ("pin_added", None, ts),
    ]

    def seen() -> list[tuple[str, str | None, str]]:
        return [(i["type"], i["subtype"], i["ts"]) for i in stream.items]

    wait_for(lambda: all(w in seen() for w in wanted), 10, f"{wanted} on the stream")
    assert all(i["channel"] == OPS for i in stream.items), stream.items
    threaded = next(i for i in stream.items if i["ts"] == reply and i["subtype"] is None)
    assert threaded["thread_ts"] == ts


def test_every_open_stream_gets_each_event(
    server: ThreadedLocalSlack, client_for: Callable[[str], WebClient]
) -> None:
    streams = [Stream(server.url) for _ in range(3)]
    try:
        ts = client_for("xoxp-alice").chat_postMessage(channel=OPS, text="hello")["ts"]
        got = lambda: all(any(i["ts"] == ts for i in s.items) for s in streams)  # noqa: E731
        wait_for(got, 10, "the message on every stream")
    finally:
        for s in streams:
            s.close()


def test_stopping_the_server_ends_open_streams() -> None:
    server = ThreadedLocalSlack(sandbox_workspace(1, False), Settings(port=0)).start()
    s = Stream(server.url)
    server.stop()  # times out if the shutdown waits for the stream's handler to end
    s.thread.join(timeout=10)
    assert not s.thread.is_alive()


def test_views_show_pins_with_who_pinned_claims_and_roll_call_answers(
    server: ThreadedLocalSlack, client_for: Callable[[str], WebClient]
) -> None:
    alice, a, b = (client_for(t) for t in ("xoxp-alice", "xoxb-troupe-a", "xoxb-troupe-b"))
    inbox = Inbox(server.api_url, "xapp-troupe-b", "xoxb-troupe-b").connect()
    try:
        ts = alice.chat_postMessage(channel=OPS, text="troupe deploy canary version=2.0.0")["ts"]
        b.pins_add(channel=OPS, timestamp=ts)
        # Two records of one generation: the earlier one wins, as Troupe's tie-break says.
        for bot, name in ((b, "troupe-b"), (a, "troupe-a")):
            record = f":lock: claimed by *{name}* · generation 2 · lease until 2099-01-01T00:00:00Z"
            bot.chat_postMessage(channel=OPS, thread_ts=ts, text=record)
        a.chat_postMessage(
            channel=OPS, text=":raising_hand: *troupe-a* here · version 1.2.3 · idle"
        )
        a.chat_postMessage(
            channel=OPS,
            text=":raising_hand: *troupe-a* here · version 1.2.4 · busy with 1700000000.000100",
        )

        view = requests.get(server.url + "/web/channel", params={"channel": OPS}, timeout=5).json()
        pinned = next(m for m in view["messages"] if m["ts"] == ts)
        assert pinned["pin"]["created_by"] == "U0TROUPEB"
        assert pinned["reply_count"] == 2

        fleet = wait_for(
            lambda: (
                (f := requests.get(server.url + "/web/fleet", timeout=5).json())
                and {x["app_id"]: x["connections"] for x in f["apps"]}["A0TROUPEB"] == 1
                and f
            ),
            10,
            "troupe-b's connection in the fleet view",
        )
        connections = {x["name"]: x["connections"] for x in fleet["apps"]}
        assert connections == {"troupe-a": 0, "troupe-b": 1, "troupe-c": 0}
        assert fleet["replicas"] == [
            {
                "name": "troupe-a",
                "version": "1.2.4",
                "state": "busy with 1700000000.000100",
                "app_id": "A0TROUPEA",
                "ts": fleet["replicas"][0]["ts"],
            }
        ]
        [claim] = fleet["claims"]
        assert (claim["ts"], claim["replica"], claim["generation"]) == (ts, "troupe-b", 2)
        assert claim["pinned_by"] == "U0TROUPEB" and claim["lease_left"] > 0
    finally:
        inbox.close()


def test_page_headers_forbid_inline_script_and_only_known_files_are_served(
    server: ThreadedLocalSlack,
) -> None:
    page = requests.get(server.url + "/", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page.text and 'src="/static/app.js"' in page.text
    assert requests.get(server.url + "/static/app.js", timeout=5).ok
    for path in ("/static/webchat.py", "/static/..%2Fwebchat.py", "/static/index.html"):
        assert requests.get(server.url + path, timeout=5).status_code == 404, path
    view = requests.get(server.url + "/web/channel", params={"channel": OPS}, timeout=5)
    assert view.headers["Content-Type"].startswith("application/json")
    assert (
        requests.get(server.url + "/web/channel?channel=C0NOPE0000", timeout=5).status_code == 404
    )


# ---- the page in Chromium -----------------------------------------------------------------


def test_chat_text_is_shown_as_text_never_run_as_html(
    server: ThreadedLocalSlack, client_for: Callable[[str], WebClient]
) -> None:
    alice, bot = client_for("xoxp-alice"), client_for("xoxb-troupe-a")
    for text in XSS:
        alice.chat_postMessage(channel=OPS, text=text)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": XSS[0]}}]
    bot.chat_postMessage(channel=OPS, text="fallback", blocks=blocks)
    with chromium() as browser, page_of(browser, server.url + "/") as page:
        messages = page.locator("#messages li.message")
        messages.nth(len(XSS)).wait_for()
        assert messages.count() == len(XSS) + 1
        body = page.locator("#messages").inner_text()
        assert "<img src=x onerror=" in body  # shown literally
        assert "<script>window.__pwned='script'</script>" in body
        assert "<b>not bold</b>" in body  # Slack's entities decoded, as text
        assert page.locator("#messages img, #messages script, #messages svg").count() == 0
        assert page.locator("#messages a").count() == 0  # a javascript: link is not a link
        assert page.locator("#messages b").count() == 0
        assert page.evaluate("window.__pwned") is None


def test_blocks_buttons_reactions_and_posting_as_a_chosen_person(
    make_server: Callable[..., ThreadedLocalSlack],
) -> None:
    server = make_server(sandbox_workspace(3, False))  # alice and bob
    bot = WebClient(token="xoxb-troupe-a", base_url=server.api_url)
    inbox = Inbox(server.api_url, "xapp-troupe-a", "xoxb-troupe-a").connect()
    try:
        with chromium() as browser, page_of(browser, server.url + "/") as page:
            page.get_by_label("Posting as").select_option("U0BOB")
            page.get_by_label("Message #ops").fill("troupe deploy canary version=2.0.0")
            page.get_by_label("Message #ops").press("Enter")
            command = page.locator("#messages li.message", has_text="troupe deploy canary")
            command.wait_for()
            ts = command.get_attribute("data-ts")
            assert ts is not None
            said = wait_for(lambda: [e for e in inbox.events("message") if e["ts"] == ts], 10)
            assert said[0]["user"] == "U0BOB"

            grid = "```\nweb1  ✓\nweb2  …\n```"
            blocks: list[dict[str, Any]] = [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*Plan*\n{grid}"}},
                {"type": "divider"},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "needs approval"}]},
                {
                    "type": "actions",
                    "elements": [
                        _button("approve", "Approve", "primary", ts),
                        _button("abort", "Abort", "danger", ts),
                    ],
                },
            ]
            plan = bot.chat_postMessage(channel=OPS, thread_ts=ts, text="plan", blocks=blocks)
            page.get_by_role("button", name="1 reply: open the thread").click()
            thread = page.locator("#thread-messages")
            assert "web1  ✓" in thread.locator("pre").inner_text()
            assert thread.locator("hr").count() == 1
            assert "needs approval" in thread.inner_text()

            # A live edit (chat.update), shown without a reload.
            done = {"type": "mrkdwn", "text": "```\nweb1  ✓\nweb2  ✓\n```"}
            edited = [{**blocks[0], "text": done}, *blocks[1:]]
            bot.chat_update(channel=OPS, ts=plan["ts"], text="plan", blocks=edited)
            pre = "document.querySelector('#thread-messages pre').textContent"
            page.wait_for_function(f"() => {pre}.includes('web2  ✓')")

            page.get_by_label("Posting as").select_option("U0ALICE")
            thread.get_by_role("button", name="Approve").click()
            clicks = wait_for(lambda: _interactions(inbox), 10, "the block_actions payload")
            action = clicks[0]["actions"][0]
            assert (action["action_id"], action["value"]) == ("approve", ts)
            assert clicks[0]["user"]["id"] == "U0ALICE"
            assert clicks[0]["container"]["message_ts"] == plan["ts"]

            # A reaction added on the page, as the person chosen there.
            page.get_by_label("Posting as").select_option("U0BOB")
            command.get_by_role("button", name="React with 👍 (:+1:)").click()
            page.locator("#messages [data-reaction='+1']").wait_for()
            reactions = bot.reactions_get(channel=OPS, timestamp=ts)["message"]["reactions"]
            assert reactions == [{"name": "+1", "users": ["U0BOB"], "count": 1}]
            bot.reactions_add(channel=OPS, timestamp=ts, name="white_check_mark")
            page.locator("#messages [data-reaction='white_check_mark']").wait_for()
            screenshot(page, "webchat-blocks")

            # A reply from the thread's box (keyboard only), then Escape closes the thread.
            page.get_by_label("Reply in the thread").fill("looks good")
            page.keyboard.press("Enter")
            thread.locator("li.message", has_text="looks good").wait_for()
            replies = bot.conversations_replies(channel=OPS, ts=ts)["messages"]
            assert [(m["user"], m["text"]) for m in replies[-1:]] == [("U0BOB", "looks good")]
            page.keyboard.press("Escape")
            page.locator("#thread").wait_for(state="hidden")
    finally:
        inbox.close()


def _button(action_id: str, text: str, style: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "style": style,
        "value": value,
        "text": {"type": "plain_text", "text": text},
    }


def _interactions(inbox: Inbox) -> list[dict[str, Any]]:
    return [r.payload for r in inbox.requests if r.type == "interactive"]
