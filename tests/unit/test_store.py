"""troupe.localslack.store: messages, threads, pins, reactions and paging, on a fake clock."""

from __future__ import annotations

import json
import re

import pytest

from troupe.localslack.store import (
    MAX_PINS,
    MAX_REACTIONS,
    MAX_TEXT,
    ApiError,
    ChannelState,
    Message,
    Store,
    Window,
    decode_cursor,
    encode_cursor,
    format_ts,
    is_ts,
    iter_pins,
    valid_emoji,
)
from troupe.localslack.workspace import Channel, Workspace, default_workspace

OPS, DEPLOYS = "C0OPS00001", "C0DEPLOYS1"
ALICE, BOT_A, BOT_B, BOT_C = "U0ALICE", "U0TROUPEA", "U0TROUPEB", "U0TROUPEC"
T0 = 1_700_000_000.0
TS = re.compile(r"^\d{10}\.\d{6}$")


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def workspace() -> Workspace:
    base = default_workspace()
    deploys = Channel(id=DEPLOYS, name="deploys", members=[ALICE])
    return Workspace(
        team=base.team, users=base.users, channels=[*base.channels, deploys], apps=base.apps
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Store:
    return Store(workspace(), clock)


@pytest.fixture
def ops(store: Store) -> ChannelState:
    return store.channel(OPS)


def post(
    store: Store, state: ChannelState, user: str = ALICE, text: str = "hi", **kw: object
) -> Message:
    msg = Message(ts="", user=user, text=text)
    for key, value in kw.items():
        setattr(msg, key, value)
    return store.post(state, msg)


def api_error(code: str) -> pytest.RaisesExc[ApiError]:
    return pytest.raises(ApiError, match=f"^{code}$")


# ---- ts ------------------------------------------------------------------------------------


def test_ts_follows_the_clock(store: Store, ops: ChannelState, clock: Clock) -> None:
    clock.now = 1_700_000_123.456789

    assert post(store, ops).ts == "1700000123.456789"


def test_ts_strictly_increases_when_the_clock_stands_still(store: Store, ops: ChannelState) -> None:
    stamps = [post(store, ops).ts for _ in range(5)]

    assert stamps == [f"1700000000.00000{i}" for i in range(5)]
    assert all(TS.match(ts) for ts in stamps)


def test_ts_strictly_increases_when_the_clock_goes_backwards(
    store: Store, ops: ChannelState, clock: Clock
) -> None:
    first = post(store, ops).ts
    clock.now = T0 - 3600
    second = post(store, ops).ts
    clock.now = T0 - 7200
    third = post(store, ops).ts

    assert first < second < third
    assert (first, second, third) == ("1700000000.000000", "1700000000.000001", "1700000000.000002")


def test_ts_is_per_channel(store: Store, ops: ChannelState) -> None:
    deploys = store.channel(DEPLOYS)
    in_ops = [post(store, ops).ts for _ in range(3)]

    assert post(store, deploys).ts == in_ops[0]  # unique within a channel only, as on Slack


def test_edits_also_advance_the_channel_clock(store: Store, ops: ChannelState) -> None:
    first = post(store, ops)
    edited = store.update(ops, first.ts, ALICE, {"text": "edited"})
    second = post(store, ops)

    assert edited.edited is not None
    assert first.ts < edited.edited["ts"] < second.ts


def test_event_ts_increases_workspace_wide(store: Store, clock: Clock) -> None:
    first = store.event_ts()
    clock.now = T0 - 1
    second = store.event_ts()

    assert TS.match(first)
    assert second > first


@pytest.mark.parametrize(
    ("micros", "expected"),
    [
        (0, "0000000000.000000"),
        (1, "0000000000.000001"),
        (1_700_000_000_000_042, "1700000000.000042"),
    ],
)
def test_format_ts(micros: int, expected: str) -> None:
    assert format_ts(micros) == expected
    assert is_ts(expected)


@pytest.mark.parametrize(
    "value", ["", "1700000000", "1700000000.00001", "170000000.000001", "1700000000.00000a", "x.y"]
)
def test_is_ts_refuses(value: str) -> None:
    assert not is_ts(value)


# ---- posting -------------------------------------------------------------------------------


def test_post_stores_the_message(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops, text="deploy web")

    assert ops.messages[msg.ts] is msg
    assert store.render(ops, msg) == {
        "type": "message",
        "text": "deploy web",
        "user": ALICE,
        "ts": msg.ts,
        "team": "T0TROUPE",
    }


def test_text_longer_than_the_limit_is_refused(store: Store, ops: ChannelState) -> None:
    post(store, ops, text="x" * MAX_TEXT)

    with api_error("msg_too_long"):
        post(store, ops, text="x" * (MAX_TEXT + 1))
    assert len(ops.messages) == 1


def test_bot_message_renders_bot_fields(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops, user=BOT_A, app_id="A0TROUPEA")
    app = store.workspace.apps[0]

    shown = store.render(ops, msg)

    assert (shown["bot_id"], shown["app_id"]) == (app.bot_id, "A0TROUPEA")
    assert shown["bot_profile"]["id"] == app.bot_id
    assert shown["bot_profile"]["name"] == "troupe-a"
    assert shown["bot_profile"]["team_id"] == "T0TROUPE"
    assert "subtype" not in shown  # a modern bot's message has no subtype


def test_unknown_channel(store: Store) -> None:
    with api_error("channel_not_found"):
        store.channel("C0NOPE0001")
    with api_error("channel_not_found"):
        store.channel(None)


def test_member_channel(store: Store) -> None:
    assert store.member_channel(DEPLOYS, ALICE).info.id == DEPLOYS
    with api_error("not_in_channel"):
        store.member_channel(DEPLOYS, BOT_A)


@pytest.mark.parametrize(
    ("ts", "code"),
    [(None, "no_item_specified"), ("", "no_item_specified"), ("12", "bad_timestamp")],
)
def test_message_lookup_errors(store: Store, ops: ChannelState, ts: str | None, code: str) -> None:
    with api_error(code):
        store.message(ops, ts)


def test_message_not_found(store: Store, ops: ChannelState) -> None:
    with api_error("message_not_found"):
        store.message(ops, "1700000000.000000")


# ---- threads -------------------------------------------------------------------------------


def test_thread_bookkeeping(store: Store, ops: ChannelState, clock: Clock) -> None:
    parent = post(store, ops, text="deploy web")
    replies = []
    for user in (BOT_A, BOT_B, BOT_A):
        clock.now += 1
        replies.append(post(store, ops, user=user, thread_ts=parent.ts))

    shown = store.render(ops, parent)

    assert shown["thread_ts"] == parent.ts
    assert shown["reply_count"] == 3
    assert shown["reply_users"] == [BOT_A, BOT_B]
    assert shown["reply_users_count"] == 2
    assert shown["latest_reply"] == replies[-1].ts
    for reply in replies:
        rendered = store.render(ops, reply)
        assert rendered["thread_ts"] == parent.ts
        assert rendered["parent_user_id"] == ALICE
        assert "reply_count" not in rendered


def test_reply_users_shows_at_most_five(store: Store, ops: ChannelState) -> None:
    parent = post(store, ops)
    users = [f"U0PERSON{i}" for i in range(7)]
    for user in users:
        post(store, ops, user=user, thread_ts=parent.ts)

    shown = store.render(ops, parent)

    assert shown["reply_users"] == users[:5]
    assert shown["reply_users_count"] == 7


def test_reply_to_a_reply_is_filed_under_the_parent(store: Store, ops: ChannelState) -> None:
    parent = post(store, ops)
    first = post(store, ops, user=BOT_A, thread_ts=parent.ts)

    second = post(store, ops, user=BOT_B, thread_ts=first.ts)

    assert second.thread_ts == parent.ts
    assert parent.replies == [first.ts, second.ts]
    assert first.replies == []
    assert store.render(ops, parent)["reply_count"] == 2


def test_thread_errors(store: Store, ops: ChannelState) -> None:
    post(store, ops)
    join = post(store, ops, user=BOT_A, subtype="channel_join")

    with api_error("invalid_thread_ts"):
        post(store, ops, thread_ts="yesterday")
    with api_error("thread_not_found"):
        post(store, ops, thread_ts="1600000000.000000")
    with api_error("cannot_reply_to_message"):
        post(store, ops, thread_ts=join.ts)
    assert len(ops.messages) == 2


def test_deleting_a_reply_updates_the_parent(store: Store, ops: ChannelState) -> None:
    parent = post(store, ops)
    first = post(store, ops, user=BOT_A, thread_ts=parent.ts)
    second = post(store, ops, user=BOT_B, thread_ts=parent.ts)

    store.delete(ops, second.ts, BOT_B)

    shown = store.render(ops, parent)
    assert (shown["reply_count"], shown["latest_reply"], shown["reply_users"]) == (
        1,
        first.ts,
        [BOT_A],
    )


def test_parent_keeps_thread_ts_when_its_last_reply_is_deleted(
    store: Store, ops: ChannelState
) -> None:
    parent = post(store, ops)
    reply = post(store, ops, user=BOT_A, thread_ts=parent.ts)

    store.delete(ops, reply.ts, BOT_A)

    shown = store.render(ops, parent)
    assert (shown["thread_ts"], shown["reply_count"]) == (parent.ts, 0)


def test_deleting_a_thread_parent_leaves_a_tombstone(store: Store, ops: ChannelState) -> None:
    parent = post(store, ops, text="deploy web")
    reply = post(store, ops, user=BOT_A, text="r0", thread_ts=parent.ts)

    store.delete(ops, parent.ts, ALICE)

    thread = store.replies(ops, reply.ts, Window()).messages
    assert [(m.ts, m.user, m.subtype, m.text) for m in thread] == [
        (parent.ts, "USLACKBOT", "tombstone", "This message was deleted."),
        (reply.ts, BOT_A, None, "r0"),
    ]
    later = post(store, ops, user=BOT_B, text="r1", thread_ts=reply.ts)  # reply to a reply
    assert later.thread_ts == parent.ts
    assert store.render(ops, ops.messages[parent.ts])["reply_count"] == 2


def test_deleting_a_lone_message_leaves_nothing(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops)

    store.delete(ops, msg.ts, ALICE)

    assert ops.messages == {}


# ---- history -------------------------------------------------------------------------------


def channel_with_five(store: Store, state: ChannelState, clock: Clock) -> list[str]:
    """Five top-level messages one second apart, each with a reply; returns their ts."""
    stamps = []
    for i in range(5):
        clock.now = T0 + 10 * i
        msg = post(store, state, text=f"m{i}")
        clock.now += 1
        post(store, state, user=BOT_A, text=f"r{i}", thread_ts=msg.ts)
        stamps.append(msg.ts)
    return stamps


def texts(page_messages: list[Message]) -> list[str]:
    return [m.text for m in page_messages]


def test_history_is_top_level_newest_first(store: Store, ops: ChannelState, clock: Clock) -> None:
    channel_with_five(store, ops, clock)

    page = store.history(ops, Window())

    assert texts(page.messages) == ["m4", "m3", "m2", "m1", "m0"]
    assert (page.has_more, page.next_cursor) == (False, "")


def test_history_shows_thread_broadcasts(store: Store, ops: ChannelState, clock: Clock) -> None:
    parent = post(store, ops, text="parent")
    clock.now += 1
    post(store, ops, user=BOT_A, text="quiet", thread_ts=parent.ts)
    clock.now += 1
    post(store, ops, user=BOT_A, text="loud", thread_ts=parent.ts, reply_broadcast=True)

    assert texts(store.history(ops, Window()).messages) == ["loud", "parent"]


def test_history_pages_with_cursor_and_limit(store: Store, ops: ChannelState, clock: Clock) -> None:
    channel_with_five(store, ops, clock)

    first = store.history(ops, Window(limit=2))
    second = store.history(ops, Window(limit=2, cursor=first.next_cursor))
    third = store.history(ops, Window(limit=2, cursor=second.next_cursor))

    assert [texts(p.messages) for p in (first, second, third)] == [
        ["m4", "m3"],
        ["m2", "m1"],
        ["m0"],
    ]
    assert [p.has_more for p in (first, second, third)] == [True, True, False]
    assert third.next_cursor == ""


def test_history_page_that_ends_exactly_has_no_cursor(
    store: Store, ops: ChannelState, clock: Clock
) -> None:
    channel_with_five(store, ops, clock)

    page = store.history(ops, Window(limit=5))

    assert len(page.messages) == 5
    assert (page.has_more, page.next_cursor) == (False, "")


def test_history_latest_and_oldest_are_exclusive(
    store: Store, ops: ChannelState, clock: Clock
) -> None:
    ts = channel_with_five(store, ops, clock)

    page = store.history(ops, Window(latest=ts[3], oldest=ts[1]))

    assert texts(page.messages) == ["m2"]


def test_history_inclusive(store: Store, ops: ChannelState, clock: Clock) -> None:
    ts = channel_with_five(store, ops, clock)

    page = store.history(ops, Window(latest=ts[3], oldest=ts[1], inclusive=True))

    assert texts(page.messages) == ["m3", "m2", "m1"]


def test_history_window_and_paging_combine(store: Store, ops: ChannelState, clock: Clock) -> None:
    ts = channel_with_five(store, ops, clock)

    first = store.history(ops, Window(latest=ts[4], limit=2))
    second = store.history(ops, Window(latest=ts[4], limit=2, cursor=first.next_cursor))

    assert texts(first.messages) == ["m3", "m2"]
    assert texts(second.messages) == ["m1", "m0"]
    assert not second.has_more


def test_cursor_is_slack_style_and_round_trips() -> None:
    cursor = encode_cursor("1512085861.000543")

    assert cursor == "bmV4dF90czoxNTEyMDg1ODYxLjAwMDU0Mw=="
    assert decode_cursor(cursor) == "1512085861.000543"


@pytest.mark.parametrize("cursor", ["garbage!", "bm9wZQ==", encode_cursor("x")[:-2] + "@@"])
def test_bad_cursor(cursor: str) -> None:
    with api_error("invalid_cursor"):
        decode_cursor(cursor)


# ---- replies -------------------------------------------------------------------------------


def test_replies_parent_first_then_oldest_to_newest(
    store: Store, ops: ChannelState, clock: Clock
) -> None:
    parent = post(store, ops, text="parent")
    for i in range(3):
        clock.now += 1
        post(store, ops, user=BOT_A, text=f"r{i}", thread_ts=parent.ts)

    page = store.replies(ops, parent.ts, Window())

    assert texts(page.messages) == ["parent", "r0", "r1", "r2"]


def test_replies_from_a_reply_give_the_whole_thread(store: Store, ops: ChannelState) -> None:
    parent = post(store, ops, text="parent")
    reply = post(store, ops, user=BOT_A, text="r0", thread_ts=parent.ts)

    assert texts(store.replies(ops, reply.ts, Window()).messages) == ["parent", "r0"]


def test_replies_of_a_lone_message(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops, text="alone")

    assert texts(store.replies(ops, msg.ts, Window()).messages) == ["alone"]


def test_replies_paging(store: Store, ops: ChannelState, clock: Clock) -> None:
    parent = post(store, ops, text="parent")
    for i in range(3):
        clock.now += 1
        post(store, ops, user=BOT_A, text=f"r{i}", thread_ts=parent.ts)

    first = store.replies(ops, parent.ts, Window(limit=2))
    second = store.replies(ops, parent.ts, Window(limit=2, cursor=first.next_cursor))

    assert (texts(first.messages), first.has_more) == (["parent", "r0"], True)
    assert (texts(second.messages), second.has_more) == (["r1", "r2"], False)


@pytest.mark.parametrize("ts", [None, "", "soon", "1600000000.000000"])
def test_replies_of_an_unknown_thread(store: Store, ops: ChannelState, ts: str | None) -> None:
    with api_error("thread_not_found"):
        store.replies(ops, ts, Window())


# ---- pins ----------------------------------------------------------------------------------


def pin(store: Store, state: ChannelState, ts: str, user: str = BOT_A) -> None:
    store.pin(state, store.check_pinnable(state, ts), user)


def test_pin_and_unpin(store: Store, ops: ChannelState, clock: Clock) -> None:
    msg = post(store, ops)
    clock.now = T0 + 5

    pin(store, ops, msg.ts)

    assert (ops.pins[msg.ts].created, ops.pins[msg.ts].created_by) == (int(T0) + 5, BOT_A)
    assert store.render(ops, msg)["pinned_to"] == [OPS]
    assert store.unpin(ops, msg.ts) is msg
    assert ops.pins == {}
    assert "pinned_to" not in store.render(ops, msg)


def test_already_pinned_whoever_pinned_it(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops)
    pin(store, ops, msg.ts, user=BOT_A)

    with api_error("already_pinned"):
        store.check_pinnable(ops, msg.ts)
    assert ops.pins[msg.ts].created_by == BOT_A


def test_unpin_of_an_unpinned_message(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops)

    with api_error("no_pin"):
        store.unpin(ops, msg.ts)


def test_too_many_pins_at_one_hundred(store: Store, ops: ChannelState) -> None:
    stamps = [post(store, ops).ts for _ in range(MAX_PINS + 1)]
    for ts in stamps[:MAX_PINS]:
        pin(store, ops, ts)

    assert MAX_PINS == 100
    with api_error("too_many_pins"):
        store.check_pinnable(ops, stamps[-1])
    store.unpin(ops, stamps[0])
    pin(store, ops, stamps[-1])
    assert len(ops.pins) == 100


def test_channel_join_is_not_pinnable(store: Store, ops: ChannelState) -> None:
    join = post(store, ops, user=BOT_A, subtype="channel_join")

    with api_error("not_pinnable"):
        store.check_pinnable(ops, join.ts)


def test_pin_lookup_errors(store: Store, ops: ChannelState) -> None:
    with api_error("message_not_found"):
        store.check_pinnable(ops, "1600000000.000000")
    with api_error("bad_timestamp"):
        store.check_pinnable(ops, "now")
    with api_error("no_item_specified"):
        store.check_pinnable(ops, None)


def test_deleting_a_pinned_message_removes_the_pin(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops)
    pin(store, ops, msg.ts)

    store.delete(ops, msg.ts, ALICE)

    assert ops.pins == {}


def test_iter_pins_newest_first(store: Store, ops: ChannelState, clock: Clock) -> None:
    older, newer = post(store, ops, text="older"), post(store, ops, text="newer")
    pin(store, ops, newer.ts)
    clock.now += 60
    pin(store, ops, older.ts)

    assert [m.text for m, _ in iter_pins(ops)] == ["older", "newer"]


# ---- reactions -----------------------------------------------------------------------------


def test_reactions(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops)

    store.react(ops, msg.ts, BOT_A, "eyes")
    store.react(ops, msg.ts, BOT_B, ":eyes:")
    store.react(ops, msg.ts, BOT_A, "white_check_mark")

    assert store.render(ops, msg)["reactions"] == [
        {"name": "eyes", "users": [BOT_A, BOT_B], "count": 2},
        {"name": "white_check_mark", "users": [BOT_A], "count": 1},
    ]


def test_same_user_same_emoji_is_already_reacted(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops)
    store.react(ops, msg.ts, BOT_A, "eyes")

    with api_error("already_reacted"):
        store.react(ops, msg.ts, BOT_A, ":eyes:")
    assert msg.reactions == {"eyes": [BOT_A]}


def test_unreact(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops)
    store.react(ops, msg.ts, BOT_A, "eyes")
    store.react(ops, msg.ts, BOT_B, "eyes")

    store.unreact(ops, msg.ts, BOT_A, "eyes")
    assert msg.reactions == {"eyes": [BOT_B]}
    store.unreact(ops, msg.ts, BOT_B, ":eyes:")
    assert msg.reactions == {}
    assert "reactions" not in store.render(ops, msg)


def test_no_reaction(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops)
    store.react(ops, msg.ts, BOT_A, "eyes")

    with api_error("no_reaction"):
        store.unreact(ops, msg.ts, BOT_B, "eyes")
    with api_error("no_reaction"):
        store.unreact(ops, msg.ts, BOT_A, "tada")


@pytest.mark.parametrize("name", [None, "", ":", "::", "thumbs up", " "])
def test_invalid_emoji_name(store: Store, ops: ChannelState, name: str | None) -> None:
    msg = post(store, ops)

    with api_error("invalid_name"):
        store.react(ops, msg.ts, BOT_A, name)
    with api_error("invalid_name"):
        store.unreact(ops, msg.ts, BOT_A, name)


def test_valid_emoji_keeps_skin_tones() -> None:
    assert valid_emoji(":thumbsup::skin-tone-2:") == "thumbsup::skin-tone-2"
    assert valid_emoji("+1") == "+1"


def test_too_many_distinct_reactions(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops)
    for i in range(MAX_REACTIONS):
        store.react(ops, msg.ts, BOT_A, f"emoji{i}")

    with api_error("too_many_reactions"):
        store.react(ops, msg.ts, BOT_A, "one_more")
    store.react(ops, msg.ts, BOT_B, "emoji0")  # an existing emoji still takes more users
    assert msg.reactions["emoji0"] == [BOT_A, BOT_B]


def test_reaction_on_a_missing_message(store: Store, ops: ChannelState) -> None:
    with api_error("message_not_found"):
        store.react(ops, "1600000000.000000", BOT_A, "eyes")


# ---- update and delete -------------------------------------------------------------------


def test_update_own_message(store: Store, ops: ChannelState, clock: Clock) -> None:
    msg = post(store, ops, user=BOT_A, text="deploying")
    clock.now += 2

    store.update(ops, msg.ts, BOT_A, {"text": "deployed", "blocks": [{"type": "divider"}]})

    shown = store.render(ops, msg)
    assert (shown["text"], shown["blocks"], shown["ts"]) == (
        "deployed",
        [{"type": "divider"}],
        msg.ts,
    )
    assert shown["edited"] == {"user": BOT_A, "ts": "1700000002.000000"}


def test_cannot_update_someone_elses_message(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops, user=BOT_A, text="mine")

    with api_error("cant_update_message"):
        store.update(ops, msg.ts, BOT_B, {"text": "yours"})
    assert (msg.text, msg.edited) == ("mine", None)


def test_update_too_long(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops, user=BOT_A, text="short")

    with api_error("msg_too_long"):
        store.update(ops, msg.ts, BOT_A, {"text": "x" * (MAX_TEXT + 1)})
    assert msg.text == "short"


def test_delete_own_message(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops, user=BOT_A)

    assert store.delete(ops, msg.ts, BOT_A) is msg
    assert msg.ts not in ops.messages
    with api_error("message_not_found"):
        store.delete(ops, msg.ts, BOT_A)


def test_cannot_delete_someone_elses_message(store: Store, ops: ChannelState) -> None:
    msg = post(store, ops, user=BOT_A)

    with api_error("cant_delete_message"):
        store.delete(ops, msg.ts, ALICE)
    assert msg.ts in ops.messages


# ---- join ------------------------------------------------------------------------------------


def test_join(store: Store) -> None:
    deploys = store.channel(DEPLOYS)

    assert store.join(deploys, BOT_A) is True
    assert store.join(deploys, BOT_A) is False
    assert deploys.members == {ALICE, BOT_A}


# ---- snapshot / restore ------------------------------------------------------------------


def busy_store(clock: Clock) -> Store:
    store = Store(workspace(), clock)
    ops = store.channel(OPS)
    parent = post(store, ops, text="deploy web")
    reply = post(store, ops, user=BOT_A, text="claimed", thread_ts=parent.ts, app_id="A0TROUPEA")
    post(store, ops, user=BOT_B, text="fyi", thread_ts=parent.ts, reply_broadcast=True)
    post(store, ops, user=BOT_A, subtype="channel_join", text="joined")
    pin(store, ops, parent.ts)
    store.react(ops, parent.ts, BOT_A, "eyes")
    store.update(ops, reply.ts, BOT_A, {"text": "claimed (lease 30s)"})
    store.join(store.channel(DEPLOYS), BOT_C)
    return store


def test_snapshot_restore_round_trip(clock: Clock) -> None:
    original = busy_store(clock)
    saved = json.loads(json.dumps(original.snapshot()))  # must survive a JSON file

    restored = Store(workspace(), clock)
    restored.restore(saved)

    assert restored.snapshot() == original.snapshot()
    for cid in (OPS, DEPLOYS):
        a, b = original.channel(cid), restored.channel(cid)
        assert [original.render(a, m) for m in a.messages.values()] == [
            restored.render(b, m) for m in b.messages.values()
        ]
        assert a.members == b.members
    assert BOT_C in restored.channel(DEPLOYS).members


def test_restored_store_keeps_ts_increasing(clock: Clock) -> None:
    original = busy_store(clock)
    last = max(original.channel(OPS).messages)
    clock.now = T0 - 86_400  # a restart with a clock that went back a day

    restored = Store(workspace(), clock)
    restored.restore(original.snapshot())
    ops = restored.channel(OPS)

    assert post(restored, ops).ts > last


def test_restore_ignores_channels_the_workspace_no_longer_has(clock: Clock) -> None:
    saved = busy_store(clock).snapshot()
    smaller = default_workspace()

    restored = Store(smaller, clock)
    restored.restore(saved)

    assert set(restored.channels) == {OPS}
    assert len(restored.channel(OPS).messages) == 4
