"""Response and event shapes of localslack, compared with Slack's own samples.

Real clients against a real localslack on loopback: slack_sdk's WebClient for the Web API,
slack_sdk's builtin SocketModeClient for events. For each method (and event) the field
names of our answer are compared with the sample in shared/slack/samples/: every field of
the sample must be present, except

- fields that do not apply to the case exercised (listed at the comparison), and
- the OMITTED_* allow-lists below: what localslack deliberately leaves out, with why.

Gaps these comparisons found were fixed; the tests at the end of the file pin the fixes.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from functools import cache
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import SlackResponse

from tests.conftest import ALICE, APP_A, BOT_A, BOT_B, OPS, SHARED, ServerFactory
from troupe.localslack.server import ThreadedLocalSlack
from troupe.localslack.workspace import Channel, Workspace, default_workspace

pytestmark = pytest.mark.integration

JSON = dict[str, Any]
Client = Callable[[str], WebClient]
SAMPLES = SHARED / "slack" / "samples"
ALICE_ID, A_ID, B_ID = "U0ALICE", "U0TROUPEA", "U0TROUPEB"
DEPLOYS = "C0DEPLOYS1"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*deploy* web"}}]
ATTACHMENTS = [{"fallback": "plan", "text": "3 hosts"}]
WAIT = 5.0  # seconds: upper bound for an event to arrive on loopback

# ---- what localslack deliberately omits ------------------------------------------------------

# The java-slack-sdk samples (samples/api) merge success and error bodies: these are the
# error-side fields, never part of a success.
ERROR_FIELDS = {"error", "needed", "provided", "warning", "arg", "callstack", "response_metadata"}
# Enterprise Grid / Slack Connect: localslack is one plain workspace.
ENTERPRISE = {
    "enterprise_id",
    "is_pending_ext_shared",
    "pending_shared",
    "source_team",
    "user_team",
}
# Per-viewer read state, which localslack does not track.
READ_STATE = {"last_read", "unread_count", "is_starred"}
# Files and uploads, not modelled.
FILES = {"file", "upload", "display_as_bot"}
# Classic (pre-app) bots post with subtype "bot_message" and a `username`; localslack's apps
# are modern apps, whose messages carry bot_id/app_id/bot_profile and no subtype.
CLASSIC_BOT = {"subtype", "username", "icons"}

OMITTED_TOP = {
    # Token rotation is not modelled; enterprise_id only for Grid installs.
    "auth.test": {"enterprise_id", "expires_in"},
    # reactions.get's sample is for a file (type "file"); messages are compared below.
    "reactions.get": {"file"},
}
OMITTED_MESSAGE = ENTERPRISE | READ_STATE | FILES | {"metadata"}
OMITTED_CHANNEL = (
    ENTERPRISE
    | READ_STATE
    | {
        "locale",  # only with include_locale=true
        "parent_conversation",  # sub-conversations (huddles, canvases) are not modelled
        "is_read_only",  # posting restrictions are not modelled
    }
)
OMITTED_USER = {"color", "has_2fa"}  # cosmetic / admin-only
OMITTED_PROFILE = {
    "avatar_hash",  # no avatars in localslack ...
    "image_24",
    "image_32",
    "image_48",
    "image_72",
    "image_192",
    "image_512",
    "image_original",
    "email",  # ... no e-mail addresses (needs users:read.email anyway) ...
    "status_text",  # ... and no statuses
    "status_emoji",
}
# Event envelopes: deprecated `authed_users`/`authed_teams` (replaced by `authorizations`).
OMITTED_CALLBACK = {"authed_users", "authed_teams", "enterprise_id"}
OMITTED_EVENT = ENTERPRISE | FILES | {"metadata", "user_profile", "username", "icons"}

# ---- fields that were once missing: see the regression tests at the end ------------------


# ---- samples -------------------------------------------------------------------------------


@cache
def load(relative: str) -> JSON:
    data = json.loads((SAMPLES / relative).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def success(method: str) -> JSON:
    """The success example of the OpenAPI spec, else the java-sdk field list less errors."""
    path = SAMPLES / "openapi-examples" / f"{method}.json"
    if path.exists():
        example = load(f"openapi-examples/{method}.json")["success_example"]
        assert isinstance(example, dict)
        return example
    return {k: v for k, v in load(f"api/{method}.json").items() if k not in ERROR_FIELDS}


def event_sample(name: str) -> JSON:
    return load(f"events/{name}.json")


def lacking(ours: JSON, theirs: JSON, *excused: AbstractSet[str]) -> set[str]:
    """Fields of `theirs` that `ours` lacks, less the excused ones."""
    gone = set(theirs) - set(ours)
    for names in excused:
        gone -= names
    return gone


def assert_top(method: str, body: JSON, *excused: AbstractSet[str]) -> JSON:
    theirs = success(method)
    assert body["ok"] is True
    assert lacking(body, theirs, OMITTED_TOP.get(method, set()), *excused) == set()
    return theirs


# ---- Web API helpers -----------------------------------------------------------------------


def call(client: WebClient, method: str, **args: Any) -> JSON:
    """Call `method` through slack_sdk's own method (e.g. chat_postMessage), which encodes
    arguments as real clients do and raises SlackApiError unless ok is true."""
    response: SlackResponse = getattr(client, method.replace(".", "_"))(**args)
    assert response.status_code == 200
    data = response.data
    assert isinstance(data, dict)
    return data


def bot_thread(client_for: Client) -> tuple[JSON, JSON]:
    """Alice's message with a reply from bot A; returns (parent, reply) as posted."""
    parent = call(client_for(ALICE), "chat.postMessage", channel=OPS, text="deploy web")
    reply = call(
        client_for(BOT_A), "chat.postMessage", channel=OPS, text="claimed", thread_ts=parent["ts"]
    )
    return parent, reply


# ---- Web API: auth and connections ---------------------------------------------------------


def test_auth_test_user_token(client_for: Client) -> None:
    response = client_for(ALICE).auth_test()
    body = response.data
    assert isinstance(body, dict)

    assert_top("auth.test", body)
    assert (body["user_id"], body["user"], body["team_id"]) == (ALICE_ID, "alice", "T0TROUPE")
    assert "bot_id" not in body
    assert "chat:write" in response.headers["x-oauth-scopes"]


def test_auth_test_bot_token(client_for: Client) -> None:
    body = call(client_for(BOT_A), "auth.test")

    assert_top("auth.test", body)
    # The java-sdk field list knows the bot fields that bolt reads (bot_id, app_id, ...).
    theirs = {k: v for k, v in load("api/auth.test.json").items() if k not in ERROR_FIELDS}
    assert lacking(body, theirs, OMITTED_TOP["auth.test"]) == set()
    assert (body["user_id"], body["app_id"], body["app_name"]) == (A_ID, "A0TROUPEA", "troupe-a")
    assert body["bot_id"] == default_workspace().apps[0].bot_id


def test_apps_connections_open(server: ThreadedLocalSlack, client_for: Client) -> None:
    body = call(client_for(APP_A), "apps.connections.open", app_token=APP_A)

    assert_top("apps.connections.open", body)
    assert body["url"].startswith(server.url.replace("http", "ws", 1) + "/link/?ticket=")
    assert body["url"].endswith("&app_id=A0TROUPEA")


# ---- Web API: chat -------------------------------------------------------------------------


def test_chat_post_message(client_for: Client) -> None:
    body = call(
        client_for(BOT_A), "chat.postMessage", channel=OPS, text="hi", attachments=ATTACHMENTS
    )

    theirs = assert_top("chat.postMessage", body)
    message = body["message"]
    assert lacking(message, theirs["message"], CLASSIC_BOT) == set()
    assert body["channel"] == OPS
    assert body["ts"] == message["ts"]
    assert (message["bot_id"], message["attachments"]) == (
        default_workspace().apps[0].bot_id,
        ATTACHMENTS,
    )


def test_chat_post_message_reply_in_thread(client_for: Client) -> None:
    parent, reply = bot_thread(client_for)

    message = reply["message"]
    assert (message["thread_ts"], message["parent_user_id"]) == (parent["ts"], ALICE_ID)
    theirs = success("conversations.replies")["messages"][1]  # a reply, as Slack shows one
    assert lacking(message, theirs) == set()


def test_chat_update(client_for: Client) -> None:
    bot = client_for(BOT_A)
    posted = call(bot, "chat.postMessage", channel=OPS, text="deploying")

    body = call(bot, "chat.update", channel=OPS, ts=posted["ts"], text="deployed")

    theirs = assert_top("chat.update", body)
    assert lacking(body["message"], theirs["message"]) == set()
    assert (body["channel"], body["ts"], body["text"]) == (OPS, posted["ts"], "deployed")
    assert body["message"]["edited"]["user"] == A_ID


def test_chat_delete(client_for: Client) -> None:
    bot = client_for(BOT_A)
    posted = call(bot, "chat.postMessage", channel=OPS, text="oops")

    body = call(bot, "chat.delete", channel=OPS, ts=posted["ts"])

    assert_top("chat.delete", body)
    theirs = {k: v for k, v in load("api/chat.delete.json").items() if k not in ERROR_FIELDS}
    assert lacking(body, theirs) == set()
    assert (body["channel"], body["ts"]) == (OPS, posted["ts"])


def test_chat_post_ephemeral(client_for: Client) -> None:
    body = call(client_for(BOT_A), "chat.postEphemeral", channel=OPS, user=ALICE_ID, text="psst")

    assert_top("chat.postEphemeral", body)
    assert body["message_ts"].count(".") == 1


# ---- Web API: pins and reactions -----------------------------------------------------------


def test_pins_add_list_remove(client_for: Client) -> None:
    bot = client_for(BOT_B)
    _, reply = bot_thread(client_for)

    added = call(bot, "pins.add", channel=OPS, timestamp=reply["ts"])
    listed = call(bot, "pins.list", channel=OPS)
    removed = call(bot, "pins.remove", channel=OPS, timestamp=reply["ts"])

    assert_top("pins.add", added)
    assert_top("pins.remove", removed)
    theirs = assert_top("pins.list", listed)
    [item] = listed["items"]
    their_item = theirs["items"][0]
    assert lacking(item, their_item) == set()
    assert lacking(item["message"], their_item["message"]) == set()
    assert (item["type"], item["channel"], item["created_by"]) == ("message", OPS, B_ID)
    assert item["message"]["pinned_to"] == [OPS]
    assert item["message"]["permalink"].endswith(f"/archives/{OPS}/p{reply['ts'].replace('.', '')}")
    assert call(bot, "pins.list", channel=OPS)["items"] == []


def test_reactions_add_get_remove(client_for: Client) -> None:
    parent, _ = bot_thread(client_for)
    a, b = client_for(BOT_A), client_for(BOT_B)

    added = call(a, "reactions.add", channel=OPS, timestamp=parent["ts"], name="eyes")
    call(b, "reactions.add", channel=OPS, timestamp=parent["ts"], name="eyes")
    got = call(a, "reactions.get", channel=OPS, timestamp=parent["ts"])
    removed = call(a, "reactions.remove", channel=OPS, timestamp=parent["ts"], name="eyes")

    assert_top("reactions.add", added)
    assert_top("reactions.remove", removed)
    theirs = assert_top("reactions.get", got, {"file"})
    assert (got["type"], got["channel"]) == ("message", OPS)
    [reaction] = got["message"]["reactions"]
    assert set(reaction) == set(theirs["file"]["reactions"][0])
    assert reaction == {"name": "eyes", "users": [A_ID, B_ID], "count": 2}
    history = call(a, "conversations.replies", channel=OPS, ts=parent["ts"])
    assert history["messages"][0]["reactions"] == [{"name": "eyes", "users": [B_ID], "count": 1}]


# ---- Web API: conversations ----------------------------------------------------------------


def test_conversations_history(client_for: Client) -> None:
    bot = client_for(BOT_A)
    for i in range(3):
        call(bot, "chat.postMessage", channel=OPS, text=f"m{i}")

    body = call(bot, "conversations.history", channel=OPS, limit=2)

    theirs = assert_top("conversations.history", body)
    assert set(body["response_metadata"]) == set(theirs["response_metadata"])
    assert body["has_more"] is True
    assert body["response_metadata"]["next_cursor"] != ""
    assert [m["text"] for m in body["messages"]] == ["m2", "m1"]
    for message in body["messages"]:
        assert lacking(message, theirs["messages"][0]) == set()


def test_conversations_replies(client_for: Client) -> None:
    parent, reply = bot_thread(client_for)

    body = call(client_for(BOT_A), "conversations.replies", channel=OPS, ts=parent["ts"])

    theirs = assert_top("conversations.replies", body)
    assert set(body["response_metadata"]) == set(theirs["response_metadata"])
    ours_parent, ours_reply = body["messages"]
    their_parent, their_reply = theirs["messages"][0], theirs["messages"][1]
    assert lacking(ours_parent, their_parent, OMITTED_MESSAGE) == set()
    assert lacking(ours_reply, their_reply, OMITTED_MESSAGE) == set()
    assert (ours_parent["ts"], ours_parent["reply_count"]) == (parent["ts"], 1)
    assert ours_reply["ts"] == reply["ts"]


def assert_channel(ours: JSON, theirs: JSON) -> None:
    assert lacking(ours, theirs, OMITTED_CHANNEL) == set()
    assert set(ours["topic"]) == set(theirs["topic"])
    assert set(ours["purpose"]) == set(theirs["purpose"])


def test_conversations_info(client_for: Client) -> None:
    body = call(client_for(BOT_A), "conversations.info", channel=OPS)

    theirs = assert_top("conversations.info", body)
    assert_channel(body["channel"], theirs["channel"])
    channel = body["channel"]
    assert (channel["id"], channel["name"], channel["is_member"]) == (OPS, "ops", True)
    assert channel["purpose"]["value"] == "Deployments"


def test_conversations_list(client_for: Client) -> None:
    body = call(client_for(BOT_A), "conversations.list")

    theirs = assert_top("conversations.list", body)
    assert set(body["response_metadata"]) == set(theirs["response_metadata"])
    [channel] = body["channels"]
    assert_channel(channel, theirs["channels"][0])
    assert (channel["id"], channel["num_members"]) == (OPS, 4)


def test_conversations_join_when_already_a_member(client_for: Client) -> None:
    body = call(client_for(BOT_A), "conversations.join", channel=OPS)

    # The spec's example is exactly this case: warning + response_metadata.warnings.
    theirs = assert_top("conversations.join", body)
    assert_channel(body["channel"], theirs["channel"])
    assert body["warning"] == "already_in_channel"
    assert body["response_metadata"] == {"warnings": ["already_in_channel"]}


def test_conversations_join_a_new_channel(make_server: ServerFactory) -> None:
    server = make_server(workspace=with_deploys())
    bot = WebClient(token=BOT_A, base_url=server.api_url)

    body = call(bot, "conversations.join", channel=DEPLOYS)

    assert_top("conversations.join", body, {"warning", "response_metadata"})
    assert_channel(body["channel"], success("conversations.join")["channel"])
    assert (body["channel"]["id"], body["channel"]["is_member"]) == (DEPLOYS, True)
    assert "warning" not in body


# ---- Web API: users --------------------------------------------------------------------------


def assert_user(body: JSON) -> JSON:
    theirs = assert_top("users.info", body)
    user, their_user = body["user"], theirs["user"]
    assert lacking(user, their_user, OMITTED_USER) == set()
    assert lacking(user["profile"], their_user["profile"], OMITTED_PROFILE) == set()
    # The bot fields of a profile, from the java-sdk field list.
    their_profile = load("api/users.info.json")["user"]["profile"]
    bot_fields = {"bot_id", "api_app_id", "always_active"}
    assert set(their_profile) >= bot_fields
    assert (set(user["profile"]) >= bot_fields) is user["is_bot"]
    assert isinstance(user, dict)
    return user


def test_users_info_person(client_for: Client) -> None:
    user = assert_user(call(client_for(BOT_A), "users.info", user=ALICE_ID))

    assert (user["id"], user["name"], user["real_name"], user["is_bot"]) == (
        ALICE_ID,
        "alice",
        "Alice",
        False,
    )


def test_users_info_bot(client_for: Client) -> None:
    user = assert_user(call(client_for(ALICE), "users.info", user=B_ID))

    assert (user["id"], user["is_bot"]) == (B_ID, True)
    assert user["profile"]["bot_id"] == default_workspace().apps[1].bot_id


# ---- events over Socket Mode -----------------------------------------------------------------


class Capture:
    """A real slack_sdk SocketModeClient that records every message and acks every envelope."""

    def __init__(self, server: ThreadedLocalSlack, app_token: str, bot_token: str) -> None:
        self.messages: list[JSON] = []
        self._lock = threading.Lock()
        self.client = SocketModeClient(
            app_token,
            web_client=WebClient(token=bot_token, base_url=server.api_url),
            auto_reconnect_enabled=False,
            on_message_listeners=[self._record],  # every text frame, `disconnect` included
        )
        self.client.socket_mode_request_listeners.append(self._ack)

    def _record(self, raw: str) -> None:
        message = json.loads(raw)
        with self._lock:
            self.messages.append(message)

    @staticmethod
    def _ack(client: BaseSocketModeClient, request: SocketModeRequest) -> None:
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    def start(self) -> Capture:
        self.client.connect()
        self.wait(lambda m: m.get("type") == "hello")
        return self

    def stop(self, server: ThreadedLocalSlack) -> None:
        """Close without slack_sdk's idle waits: its receive loop holds a lock until a read
        times out (3 s) and its message loop polls a queue every second. Cut the socket from
        the server side first (as /admin/sockets/drop does), then wake the message loop."""
        server.call(server.server.hub.drop_all)
        self.client.closed = True
        self.client.message_queue.put(None)
        self.client.close()

    def wait(self, match: Callable[[JSON], bool]) -> JSON:
        """The first recorded message that `match`es, waiting up to WAIT seconds for it."""
        deadline = time.monotonic() + WAIT
        while True:
            with self._lock:
                found = next((m for m in self.messages if match(m)), None)
                seen = [_label(m) for m in self.messages]
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching message within {WAIT}s; got {seen}")
            time.sleep(0.01)

    def event(self, kind: str, subtype: str | None = None, **fields: Any) -> JSON:
        """The envelope of the first event of this type (and subtype, and field values)."""

        def match(m: JSON) -> bool:
            if m.get("type") != "events_api":
                return False
            event = m["payload"]["event"]
            return (
                event.get("type") == kind
                and event.get("subtype") == subtype
                and all(event.get(k) == v for k, v in fields.items())
            )

        return self.wait(match)


def _label(message: JSON) -> str:
    if message.get("type") != "events_api":
        return str(message.get("type"))
    event = message["payload"]["event"]
    return "/".join(str(x) for x in (event.get("type"), event.get("subtype")) if x)


def with_deploys() -> Workspace:
    """The default workspace plus #deploys, where only Alice is a member."""
    base = default_workspace()
    deploys = Channel(id=DEPLOYS, name="deploys", members=[ALICE_ID])
    return Workspace(
        team=base.team, users=base.users, channels=[*base.channels, deploys], apps=base.apps
    )


@pytest.fixture
def events_server(make_server: ServerFactory) -> ThreadedLocalSlack:
    return make_server(workspace=with_deploys())


@pytest.fixture
def capture(events_server: ThreadedLocalSlack) -> Iterator[Capture]:
    """App A's Socket Mode connection, open (hello received) before the test acts."""
    cap = Capture(events_server, APP_A, BOT_A).start()
    yield cap
    cap.stop(events_server)


@pytest.fixture
def web(events_server: ThreadedLocalSlack) -> Client:
    return lambda token: WebClient(token=token, base_url=events_server.api_url)


def assert_envelope(envelope: JSON, sample_name: str) -> JSON:
    """Socket Mode envelope and event_callback fields; returns the inner event."""
    socket_sample = load(f"socket-mode/{sample_name}.json")
    assert set(envelope) == set(socket_sample)
    assert (envelope["type"], envelope["accepts_response_payload"]) == ("events_api", False)
    assert (envelope["retry_attempt"], envelope["retry_reason"]) == (0, "")
    payload = envelope["payload"]
    assert lacking(payload, socket_sample["payload"]) == set()
    assert set(payload["authorizations"][0]) == set(socket_sample["payload"]["authorizations"][0])
    assert (payload["type"], payload["api_app_id"], payload["team_id"]) == (
        "event_callback",
        "A0TROUPEA",
        "T0TROUPE",
    )
    assert payload["event_id"].startswith("Ev")
    assert isinstance(payload["event_time"], int)
    event = payload["event"]
    assert isinstance(event, dict)
    return event


def assert_callback(envelope: JSON, sample_name: str) -> JSON:
    """The event_callback against a samples/events payload; returns the sample's event."""
    theirs = event_sample(sample_name)
    payload = envelope["payload"]
    assert lacking(payload, theirs, OMITTED_CALLBACK) == set()
    assert set(payload["authorizations"][0]) == set(theirs["authorizations"][0])
    event = theirs["event"]
    assert isinstance(event, dict)
    return event


def test_hello(capture: Capture) -> None:
    hello = capture.wait(lambda m: m.get("type") == "hello")

    theirs = load("socket-mode/hello.json")
    assert lacking(hello, theirs) == set()
    assert lacking(hello["debug_info"], theirs["debug_info"]) == set()
    assert set(hello["connection_info"]) == set(theirs["connection_info"])
    assert (hello["num_connections"], hello["connection_info"]["app_id"]) == (1, "A0TROUPEA")
    assert hello["debug_info"]["approximate_connection_time"] == 3600


def test_disconnect(events_server: ThreadedLocalSlack, capture: Capture) -> None:
    url = f"{events_server.url}/admin/sockets/disconnect?reason=refresh_requested"
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=WAIT) as resp:
        assert json.load(resp)["sent"] == 1

    disconnect = capture.wait(lambda m: m.get("type") == "disconnect")

    theirs = load("socket-mode/disconnect_too_many_websockets.json")
    assert lacking(disconnect, theirs) == set()
    assert lacking(disconnect["debug_info"], theirs["debug_info"]) == set()
    assert set(disconnect["connection_info"]) == set(theirs["connection_info"])
    assert (disconnect["reason"], disconnect["connection_info"]["app_id"]) == (
        "refresh_requested",
        "A0TROUPEA",
    )
    # slack_sdk answers by connecting again; cutting the old socket spares its 3 s read timeout.
    # Wait for that new connection, so that teardown closes it rather than racing it.
    events_server.call(events_server.server.hub.drop_all)
    capture.wait(lambda m: m.get("type") == "hello" and m is not capture.messages[0])


def test_message_and_app_mention_from_a_person(capture: Capture, web: Client) -> None:
    posted = call(
        web(ALICE),
        "chat.postMessage",
        channel=OPS,
        text=f"<@{A_ID}> deploy web",
        blocks=BLOCKS,
        attachments=ATTACHMENTS,
    )

    message_env = capture.event("message", ts=posted["ts"])
    mention_env = capture.event("app_mention", ts=posted["ts"])

    message = assert_envelope(message_env, "envelope_events_api_message")
    socket_message = load("socket-mode/envelope_events_api_message.json")["payload"]["event"]
    assert lacking(message, socket_message) == set()
    theirs = assert_callback(message_env, "MessagePayload")
    person = {"bot_id", "bot_profile", "edited", "thread_ts", "parent_user_id"}
    assert lacking(message, theirs, OMITTED_EVENT, person) == set()
    assert (message["user"], message["channel"], message["blocks"]) == (ALICE_ID, OPS, BLOCKS)

    mention = assert_envelope(mention_env, "envelope_events_api_app_mention")
    socket_mention = load("socket-mode/envelope_events_api_app_mention.json")["payload"]["event"]
    assert lacking(mention, socket_mention) == set()
    theirs = assert_callback(mention_env, "AppMentionPayload")
    bot_only = {"bot_id", "app_id", "bot_profile", "subtype"}
    not_applicable = bot_only | {"edited", "thread_ts"}
    assert lacking(mention, theirs, OMITTED_EVENT, not_applicable) == set()
    assert mention["text"] == f"<@{A_ID}> deploy web"


def test_message_from_a_bot_in_a_thread(capture: Capture, web: Client) -> None:
    parent = call(web(ALICE), "chat.postMessage", channel=OPS, text="deploy web")
    reply = call(
        web(BOT_B),
        "chat.postMessage",
        channel=OPS,
        text="claimed",
        thread_ts=parent["ts"],
        blocks=BLOCKS,
        attachments=ATTACHMENTS,
    )

    envelope = capture.event("message", ts=reply["ts"])

    event = assert_envelope(envelope, "envelope_events_api_message")
    theirs = assert_callback(envelope, "MessagePayload")
    assert lacking(event, theirs, OMITTED_EVENT, {"client_msg_id", "edited"}) == set()
    assert set(event["bot_profile"]) == set(theirs["bot_profile"])
    assert (event["thread_ts"], event["parent_user_id"], event["app_id"]) == (
        parent["ts"],
        ALICE_ID,
        "A0TROUPEB",
    )
    assert "client_msg_id" not in event


def test_message_changed(capture: Capture, web: Client) -> None:
    bot = web(BOT_A)
    posted = call(
        bot,
        "chat.postMessage",
        channel=OPS,
        text="deploying",
        blocks=BLOCKS,
        attachments=ATTACHMENTS,
    )
    call(web(BOT_B), "chat.postMessage", channel=OPS, text="watching", thread_ts=posted["ts"])
    call(bot, "chat.update", channel=OPS, ts=posted["ts"], text="deploying: 1/3")
    call(bot, "chat.update", channel=OPS, ts=posted["ts"], text="deploying: 2/3")

    envelope = capture.wait(
        lambda m: (
            m.get("type") == "events_api"
            and m["payload"]["event"].get("subtype") == "message_changed"
            and m["payload"]["event"]["message"]["text"] == "deploying: 2/3"
        )
    )

    event = assert_envelope(envelope, "envelope_events_api_message")
    theirs = assert_callback(envelope, "MessageChangedPayload")
    assert set(event) == set(theirs)
    # A thread parent posted by a bot: no client_msg_id, no parent_user_id, not hidden itself.
    not_applicable = {"client_msg_id", "parent_user_id", "subtype", "hidden"}
    for key in ("message", "previous_message"):
        assert lacking(event[key], theirs[key], OMITTED_MESSAGE, not_applicable) == set(), key
        assert set(event[key]["edited"]) == set(theirs[key]["edited"])
    assert (event["message"]["ts"], event["previous_message"]["text"]) == (
        posted["ts"],
        "deploying: 1/3",
    )
    assert event["message"]["edited"]["ts"] > event["previous_message"]["edited"]["ts"]


def test_message_deleted(capture: Capture, web: Client) -> None:
    parent = call(web(ALICE), "chat.postMessage", channel=OPS, text="deploy web")
    reply = call(
        web(BOT_A),
        "chat.postMessage",
        channel=OPS,
        text="claimed",
        thread_ts=parent["ts"],
        blocks=BLOCKS,
        attachments=ATTACHMENTS,
    )
    call(web(BOT_A), "chat.delete", channel=OPS, ts=reply["ts"])

    envelope = capture.event("message", "message_deleted", deleted_ts=reply["ts"])

    event = assert_envelope(envelope, "envelope_events_api_message")
    theirs = assert_callback(envelope, "MessageDeletedPayload")
    assert set(event) == set(theirs)
    # A bot's reply, never edited: none of the parent-only or person-only fields.
    parent_only = {"reply_count", "reply_users_count", "latest_reply", "is_locked", "subscribed"}
    not_applicable = parent_only | {"client_msg_id", "edited", "subtype", "hidden"}
    previous = event["previous_message"]
    assert lacking(previous, theirs["previous_message"], OMITTED_MESSAGE, not_applicable) == set()
    assert (previous["ts"], previous["thread_ts"]) == (reply["ts"], parent["ts"])


@pytest.mark.parametrize(
    ("method", "kind", "sample_name"),
    [
        ("reactions.add", "reaction_added", "ReactionAddedPayload"),
        ("reactions.remove", "reaction_removed", "ReactionRemovedPayload"),
    ],
)
def test_reaction_events(
    capture: Capture, web: Client, method: str, kind: str, sample_name: str
) -> None:
    posted = call(web(ALICE), "chat.postMessage", channel=OPS, text="deploy web")
    call(web(BOT_B), "reactions.add", channel=OPS, timestamp=posted["ts"], name="eyes")
    if method == "reactions.remove":
        call(web(BOT_B), "reactions.remove", channel=OPS, timestamp=posted["ts"], name="eyes")

    envelope = capture.event(kind)

    event = assert_envelope(envelope, "envelope_events_api_message")
    theirs = assert_callback(envelope, sample_name)
    assert set(event) == set(theirs)
    assert set(event["item"]) == set(theirs["item"])
    assert (event["user"], event["reaction"], event["item_user"]) == (B_ID, "eyes", ALICE_ID)
    assert event["item"] == {"type": "message", "channel": OPS, "ts": posted["ts"]}


@pytest.mark.parametrize(
    ("kind", "sample_name"),
    [("pin_added", "PinAddedPayload"), ("pin_removed", "PinRemovedPayload")],
)
def test_pin_events(capture: Capture, web: Client, kind: str, sample_name: str) -> None:
    posted = call(web(BOT_A), "chat.postMessage", channel=OPS, text="claim")
    call(web(BOT_B), "pins.add", channel=OPS, timestamp=posted["ts"])
    call(web(BOT_B), "pins.remove", channel=OPS, timestamp=posted["ts"])

    envelope = capture.event(kind)

    event = assert_envelope(envelope, "envelope_events_api_message")
    theirs = assert_callback(envelope, sample_name)
    assert set(event) == set(theirs)
    assert set(event["item"]) == set(theirs["item"])
    assert set(event["pinned_info"]) == set(theirs["pinned_info"])
    message, their_message = event["item"]["message"], theirs["item"]["message"]
    assert lacking(message, their_message) == set()
    assert set(message["bot_profile"]) == set(their_message["bot_profile"])
    assert (event["user"], event["channel_id"], event["item_user"]) == (B_ID, OPS, A_ID)
    assert event["pin_count"] == (1 if kind == "pin_added" else 0)


def test_channel_join(capture: Capture, web: Client) -> None:
    call(web(BOT_A), "conversations.join", channel=DEPLOYS)

    envelope = capture.event("message", "channel_join", channel=DEPLOYS)

    event = assert_envelope(envelope, "envelope_events_api_message")
    theirs = assert_callback(envelope, "MessageChannelJoinPayload")
    # `inviter` only when someone else added the member; this is a self-join.
    assert lacking(event, theirs, {"inviter"}) == set()
    assert (event["user"], event["text"]) == (A_ID, f"<@{A_ID}> has joined the channel")
    joined = capture.event("member_joined_channel", channel=DEPLOYS)
    assert joined["payload"]["event"]["user"] == A_ID


# ---- regressions: gaps found by the comparisons above, now fixed --------------------------


def test_users_info_has_role_flags_and_normalized_names(client_for: Client) -> None:
    body = call(client_for(BOT_A), "users.info", user=ALICE_ID)

    assert set(body["user"]) >= {"is_primary_owner", "is_restricted", "is_ultra_restricted"}
    assert set(body["user"]["profile"]) >= {"display_name_normalized", "real_name_normalized"}


def test_pin_event_message_has_permalink(capture: Capture, web: Client) -> None:
    posted = call(web(BOT_A), "chat.postMessage", channel=OPS, text="claim")
    call(web(BOT_B), "pins.add", channel=OPS, timestamp=posted["ts"])

    event = capture.event("pin_added")["payload"]["event"]

    assert "permalink" in event["item"]["message"]


def test_person_message_keeps_one_client_msg_id(capture: Capture, web: Client) -> None:
    alice = web(ALICE)
    posted = call(alice, "chat.postMessage", channel=OPS, text=f"<@{A_ID}> deploy web")
    call(alice, "chat.update", channel=OPS, ts=posted["ts"], text=f"<@{A_ID}> deploy api")

    first = capture.event("message", ts=posted["ts"])["payload"]["event"]["client_msg_id"]
    mention = capture.event("app_mention", ts=posted["ts"])["payload"]["event"]
    changed = capture.event("message", "message_changed")["payload"]["event"]

    assert mention.get("client_msg_id") == first
    assert changed["message"].get("client_msg_id") == first
    assert changed["previous_message"].get("client_msg_id") == first


def test_app_mention_from_a_bot_has_bot_profile(capture: Capture, web: Client) -> None:
    posted = call(web(BOT_B), "chat.postMessage", channel=OPS, text=f"<@{A_ID}> yours")

    mention = capture.event("app_mention", ts=posted["ts"])["payload"]["event"]

    assert mention["bot_id"] == default_workspace().apps[1].bot_id
    assert "bot_profile" in mention


# ---- found while testing shapes (belongs with the server's own tests) -------------------------


def test_stop_does_not_wait_for_connected_socket_mode_clients(make_server: ServerFactory) -> None:
    server = make_server(workspace=with_deploys())
    cap = Capture(server, APP_A, BOT_A).start()
    try:
        server.run(server.server.stop(), timeout=2.0)  # takes milliseconds without clients
    finally:
        cap.stop(server)  # cuts the socket, which lets a hung stop() finish
