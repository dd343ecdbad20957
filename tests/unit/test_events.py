"""troupe.localslack.events: event payload builders, compared with Slack's samples.

The samples in shared/slack/samples/events are schema-merged captures (every field ever
seen, values blanked), so they are used for field *names* only. A field the sample has
and our payload lacks must be either not applicable to the case built here (listed per
test) or in OMITTED, which says why localslack leaves it out.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Set as AbstractSet
from functools import cache
from typing import Any

import pytest

from tests.conftest import SHARED
from troupe.localslack import events
from troupe.localslack.store import JSON, ChannelState, Message, Store
from troupe.localslack.workspace import default_workspace

EVENTS = SHARED / "slack" / "samples" / "events"
OPS, ALICE, BOT_A, BOT_B = "C0OPS00001", "U0ALICE", "U0TROUPEA", "U0TROUPEB"
T0 = 1_700_000_000.0

# Fields of the samples that localslack deliberately never sends.
OMITTED = {
    # Enterprise Grid / Slack Connect only.
    "enterprise_id",
    "source_team",
    "user_team",
    # Deprecated since 2020, replaced by `authorizations`.
    "authed_users",
    "authed_teams",
    # File uploads, which localslack does not model.
    "upload",
    "display_as_bot",
    # Message metadata (chat.postMessage `metadata`), not modelled.
    "metadata",
    # Classic (non-app) bots and legacy user_profile blobs: localslack apps are modern apps.
    "username",
    "user_profile",
    "icons",
}
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*deploy* web"}}]
ATTACHMENTS = [{"fallback": "plan", "text": "3 hosts"}]


@cache
def sample(name: str) -> dict[str, Any]:
    data = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def missing(ours: JSON, theirs: JSON, not_applicable: AbstractSet[str] = frozenset()) -> set[str]:
    """Field names of the sample that our payload lacks, less the documented exceptions."""
    return set(theirs) - set(ours) - OMITTED - not_applicable


@pytest.fixture
def store() -> Store:
    return Store(default_workspace(), lambda: T0)


@pytest.fixture
def ops(store: Store) -> ChannelState:
    return store.channel(OPS)


def post(store: Store, state: ChannelState, user: str, text: str, **kw: Any) -> JSON:
    """Store a message as the Web API does; a person's client attaches a client_msg_id."""
    msg = Message(ts="", user=user, text=text)
    if "app_id" not in kw:
        msg.client_msg_id = str(uuid.uuid4())
    for key, value in kw.items():
        setattr(msg, key, value)
    return store.render(state, store.post(state, msg))


def bot_post(store: Store, state: ChannelState, text: str = "claimed", **kw: Any) -> JSON:
    return post(store, state, BOT_A, text, app_id="A0TROUPEA", **kw)


# ---- mentions --------------------------------------------------------------------------------


def test_mentioned_users() -> None:
    text = "<@U0TROUPEA> deploy, cc <@W0BOB|bob> and <#C0OPS00001|ops>, not @U0TROUPEB"

    assert events.mentioned_users(text) == {"U0TROUPEA", "W0BOB"}
    assert events.mentioned_users("no mentions") == set()


# ---- message ---------------------------------------------------------------------------------


def test_message_event_from_a_person(store: Store, ops: ChannelState) -> None:
    parent = post(store, ops, ALICE, "deploy web")
    shown = post(
        store, ops, ALICE, "go", thread_ts=parent["ts"], blocks=BLOCKS, attachments=ATTACHMENTS
    )

    event = events.message_event(OPS, shown)

    assert (event["type"], event["channel"], event["channel_type"]) == ("message", OPS, "channel")
    assert event["event_ts"] == event["ts"] == shown["ts"]
    assert (event["user"], event["thread_ts"], event["parent_user_id"]) == (
        ALICE,
        parent["ts"],
        ALICE,
    )
    assert uuid.UUID(event["client_msg_id"])
    assert (
        missing(event, sample("MessagePayload")["event"], {"bot_id", "bot_profile", "edited"})
        == set()
    )


def test_message_event_from_a_bot(store: Store, ops: ChannelState) -> None:
    shown = bot_post(store, ops, blocks=BLOCKS, attachments=ATTACHMENTS)
    app = store.workspace.apps[0]

    event = events.message_event(OPS, shown)

    assert "client_msg_id" not in event  # only people's clients set it
    assert "subtype" not in event  # a modern app's message has none
    assert (event["bot_id"], event["app_id"], event["user"]) == (app.bot_id, "A0TROUPEA", BOT_A)
    theirs = sample("MessagePayload")["event"]
    assert set(event["bot_profile"]) == set(theirs["bot_profile"])
    assert set(event["bot_profile"]["icons"]) == set(theirs["bot_profile"]["icons"])
    not_applicable = {"client_msg_id", "edited", "thread_ts", "parent_user_id"}
    assert missing(event, theirs, not_applicable) == set()


def test_message_event_does_not_change_the_message(store: Store, ops: ChannelState) -> None:
    shown = post(store, ops, ALICE, "hi")
    before = dict(shown)

    events.message_event(OPS, shown)

    assert shown == before


def test_thread_broadcast_event(store: Store, ops: ChannelState) -> None:
    parent = post(store, ops, ALICE, "deploy web")
    shown = post(
        store,
        ops,
        ALICE,
        "done",
        thread_ts=parent["ts"],
        reply_broadcast=True,
        subtype="thread_broadcast",
        blocks=BLOCKS,
        attachments=ATTACHMENTS,
    )

    event = events.message_event(OPS, shown)

    assert (event["subtype"], event["thread_ts"]) == ("thread_broadcast", parent["ts"])
    # `root` (a copy of the parent) is what Slack adds to broadcasts; localslack does not.
    assert missing(event, sample("MessageThreadBroadcastPayload")["event"], {"root"}) == set()


def test_channel_join_event(store: Store, ops: ChannelState) -> None:
    shown = bot_post(store, ops, f"<@{BOT_A}> has joined the channel", subtype="channel_join")

    event = events.message_event(OPS, shown)

    assert (event["subtype"], event["user"], event["channel"]) == ("channel_join", BOT_A, OPS)
    # `inviter` is there only when someone else added the user; joins here are self-joins.
    assert missing(event, sample("MessageChannelJoinPayload")["event"], {"inviter"}) == set()


# ---- app_mention -----------------------------------------------------------------------------


def test_app_mention_from_a_person(store: Store, ops: ChannelState) -> None:
    shown = post(store, ops, ALICE, f"<@{BOT_A}> deploy web", blocks=BLOCKS)

    event = events.app_mention(OPS, shown)

    assert event == {
        "type": "app_mention",
        "client_msg_id": shown["client_msg_id"],
        "user": ALICE,
        "text": f"<@{BOT_A}> deploy web",
        "ts": shown["ts"],
        "team": "T0TROUPE",
        "blocks": BLOCKS,
        "channel": OPS,
        "event_ts": shown["ts"],
    }
    theirs = sample("AppMentionPayload")["event"]
    bot_only = {"bot_id", "app_id", "bot_profile"}
    assert missing(event, theirs, bot_only | {"edited", "subtype", "thread_ts"}) == set()


def test_app_mention_in_a_thread_from_a_bot(store: Store, ops: ChannelState) -> None:
    parent = post(store, ops, ALICE, "deploy web")
    shown = post(store, ops, BOT_B, f"<@{BOT_A}> yours", app_id="A0TROUPEB", thread_ts=parent["ts"])

    event = events.app_mention(OPS, shown)

    assert (event["thread_ts"], event["bot_id"], event["app_id"]) == (
        parent["ts"],
        store.workspace.apps[1].bot_id,
        "A0TROUPEB",
    )
    assert "parent_user_id" not in event  # not in Slack's app_mention either


def test_app_mention_keeps_client_msg_id_and_bot_profile(store: Store, ops: ChannelState) -> None:
    person = events.message_event(OPS, post(store, ops, ALICE, f"<@{BOT_A}> deploy"))
    bot = post(store, ops, BOT_B, f"<@{BOT_A}> yours", app_id="A0TROUPEB")

    assert events.app_mention(OPS, person).get("client_msg_id") == person["client_msg_id"]
    assert "bot_profile" in events.app_mention(OPS, bot)


# ---- message_changed / message_deleted -------------------------------------------------------


def test_message_changed(store: Store, ops: ChannelState) -> None:
    old = bot_post(store, ops, "deploying")
    new = {**old, "text": "deployed", "edited": {"user": BOT_A, "ts": "1700000001.000000"}}

    event = events.message_changed(OPS, new, old, "1700000001.000000")

    assert event == {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": OPS,
        "message": new,
        "previous_message": old,
        "ts": "1700000001.000000",
        "event_ts": "1700000001.000000",
        "channel_type": "channel",
    }
    assert set(event) == set(sample("MessageChangedPayload")["event"])


def test_message_deleted(store: Store, ops: ChannelState) -> None:
    old = bot_post(store, ops, "oops")

    event = events.message_deleted(OPS, old, "1700000002.000000")

    assert event == {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": OPS,
        "deleted_ts": old["ts"],
        "previous_message": old,
        "ts": "1700000002.000000",
        "event_ts": "1700000002.000000",
        "channel_type": "channel",
    }
    assert set(event) == set(sample("MessageDeletedPayload")["event"])


# ---- reactions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name"),
    [("reaction_added", "ReactionAddedPayload"), ("reaction_removed", "ReactionRemovedPayload")],
)
def test_reaction_events(store: Store, ops: ChannelState, kind: str, name: str) -> None:
    shown = post(store, ops, ALICE, "deploy web")

    event = events.reaction(kind, BOT_A, "eyes", OPS, shown, "1700000003.000000")

    assert event == {
        "type": kind,
        "user": BOT_A,
        "reaction": "eyes",
        "item": {"type": "message", "channel": OPS, "ts": shown["ts"]},
        "item_user": ALICE,
        "event_ts": "1700000003.000000",
    }
    theirs = sample(name)["event"]
    assert set(event) == set(theirs)
    assert set(event["item"]) == set(theirs["item"])


# ---- pins ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name"), [("pin_added", "PinAddedPayload"), ("pin_removed", "PinRemovedPayload")]
)
def test_pin_events(store: Store, ops: ChannelState, kind: str, name: str) -> None:
    shown = post(store, ops, ALICE, "deploy web")
    info = {
        "created": 1_700_000_004,
        "created_by": BOT_A,
        "pin_count": 0,
        "event_ts": "1700000004.000000",
    }

    event = events.pin(kind, BOT_A, OPS, shown, info)

    assert (event["type"], event["user"], event["channel_id"], event["item_user"]) == (
        kind,
        BOT_A,
        OPS,
        ALICE,
    )
    assert event["item"] == {
        "type": "message",
        "created": 1_700_000_004,
        "created_by": BOT_A,
        "channel": OPS,
        "message": shown,
    }
    assert event["pinned_info"] == {"channel": OPS, "pinned_by": BOT_A, "pinned_ts": 1_700_000_004}
    assert (event["pin_count"], event["event_ts"]) == (0, "1700000004.000000")
    theirs = sample(name)["event"]
    assert set(event) == set(theirs)
    assert set(event["item"]) == set(theirs["item"])
    assert set(event["pinned_info"]) == set(theirs["pinned_info"])


def test_has_pins_only_on_pin_removed(store: Store, ops: ChannelState) -> None:
    shown = post(store, ops, ALICE, "deploy web")
    info: JSON = {"created": 1, "created_by": BOT_A, "event_ts": "1700000004.000000"}

    assert "has_pins" not in events.pin("pin_added", BOT_A, OPS, shown, info | {"pin_count": 1})
    assert (
        events.pin("pin_removed", BOT_A, OPS, shown, info | {"pin_count": 0})["has_pins"] is False
    )
    assert events.pin("pin_removed", BOT_A, OPS, shown, info | {"pin_count": 2})["has_pins"] is True


# ---- member_joined_channel -------------------------------------------------------------------


def test_member_joined() -> None:
    event = events.member_joined(BOT_A, OPS, "T0TROUPE", "1700000005.000000")

    assert event == {
        "type": "member_joined_channel",
        "user": BOT_A,
        "channel": OPS,
        "channel_type": "C",
        "team": "T0TROUPE",
        "event_ts": "1700000005.000000",
    }


# ---- event_callback --------------------------------------------------------------------------


def test_event_callback(store: Store, ops: ChannelState) -> None:
    ws = store.workspace
    inner = events.message_event(OPS, post(store, ops, ALICE, "hi"))

    envelope = events.event_callback(ws, ws.apps[1], inner, "Ev0123456789", T0 + 0.9)

    assert envelope["type"] == "event_callback"
    assert envelope["event"] is inner
    assert (envelope["team_id"], envelope["api_app_id"], envelope["event_id"]) == (
        "T0TROUPE",
        "A0TROUPEB",
        "Ev0123456789",
    )
    assert envelope["event_time"] == 1_700_000_000
    assert isinstance(envelope["event_time"], int)
    assert envelope["authorizations"] == [
        {
            "enterprise_id": None,
            "team_id": "T0TROUPE",
            "user_id": "U0TROUPEB",
            "is_bot": True,
            "is_enterprise_install": False,
        }
    ]
    assert re.fullmatch(r"\d+-message-T0TROUPE-C0OPS00001", envelope["event_context"])
    for name in ("MessagePayload", "ReactionAddedPayload", "PinAddedPayload"):
        theirs = sample(name)
        assert missing(envelope, theirs) == set(), name
        assert set(envelope["authorizations"][0]) == set(theirs["authorizations"][0])


@pytest.mark.parametrize(
    ("event", "channel"),
    [
        ({"type": "message", "channel": OPS}, OPS),
        ({"type": "pin_added", "channel_id": OPS}, OPS),
        ({"type": "reaction_added", "item": {"channel": OPS}}, OPS),
    ],
)
def test_event_context_names_the_channel(event: JSON, channel: str) -> None:
    ws = default_workspace()

    envelope = events.event_callback(ws, ws.apps[0], event, "Ev1", T0)

    assert envelope["event_context"].endswith(f"-{event['type']}-T0TROUPE-{channel}")
