"""The side panel's reading of the channel (pure): claim records, their holder, leases,
roll call answers; and the sandbox's workspace and config."""

from __future__ import annotations

from datetime import UTC, datetime

from troupe.localslack.store import Message, Store
from troupe.localslack.webchat import (
    ClaimRecord,
    claim_records,
    lease_left,
    owner,
    recent,
    roll_call,
)
from troupe.sandbox import HostEntry, replica_names, sandbox_config, sandbox_workspace

LEASE = "2026-11-28T12:00:00.000Z"


def _record(name: str, gen: int) -> str:
    return f":lock: claimed by *{name}* · generation {gen} · lease until {LEASE}"


def test_the_holder_is_the_earliest_record_of_the_newest_generation() -> None:
    replies = [
        ("1000000001.000001", _record("troupe-a", 1)),
        ("1000000001.000002", "some progress"),
        ("1000000003.000001", _record("troupe-c", 2)),
        ("1000000002.000001", _record("troupe-b", 2)),
    ]
    records = claim_records(replies)
    assert [r.replica for r in records] == ["troupe-a", "troupe-c", "troupe-b"]
    assert owner(records) == ClaimRecord("troupe-b", 2, LEASE, "1000000002.000001")
    assert owner([]) is None
    assert claim_records([("1000000001.000001", "claimed by *x* · generation 1")]) == []


def test_lease_left_reads_utc_times_and_refuses_garbage() -> None:
    now = datetime(2026, 11, 28, 11, 59, 30, tzinfo=UTC).timestamp()
    assert lease_left(LEASE, now) == 30.0
    assert lease_left("2026-11-28T11:59:00", now) == -30.0
    assert lease_left("soon", now) is None


def test_roll_call_answers() -> None:
    text = ":raising_hand: *troupe-a* here · version 0.1.0 · a6eed8b · busy with 17000.1"
    assert roll_call(text) == {
        "name": "troupe-a",
        "version": "0.1.0 · a6eed8b",
        "state": "busy with 17000.1",
    }
    assert roll_call("troupe roll call") is None


def test_sandbox_workspace_per_app_and_shared() -> None:
    apart = sandbox_workspace(3, shared_app=False)
    assert [a.name for a in apart.apps] == ["troupe-a", "troupe-b", "troupe-c"]
    shared = sandbox_workspace(3, shared_app=True)
    assert [a.name for a in shared.apps] == ["troupe"]
    for ws in (apart, shared):
        [ops] = ws.channels
        bots = {a.bot_user_id for a in ws.apps}
        assert {"U0ALICE", "U0BOB"} | bots == set(ops.members)
    assert replica_names(3) == ["troupe-a", "troupe-b", "troupe-c"]


def test_sandbox_config_names_the_fleet_and_every_host() -> None:
    ws = sandbox_workspace(2, shared_app=False)
    hosts = [HostEntry("web1", {"connection": "local"}), HostEntry("web2", {"address": "x"})]
    config = sandbox_config(ws, "http://127.0.0.1:1/api/", hosts, {"user": "u"})
    assert config["inventory"]["groups"] == {"web": ["web1", "web2"]}
    assert config["inventory"]["defaults"] == {"user": "u"}
    assert config["slack"]["fleet"] == ["U0TROUPEA", "U0TROUPEB"]
    assert config["slack"]["prefix"] == "troupe"


def test_the_page_gets_the_newest_messages_with_their_whole_threads() -> None:
    clock = iter(float(1_000_000_000 + i) for i in range(100))
    store = Store(sandbox_workspace(1, shared_app=False), lambda: next(clock))
    state = store.channel("C0OPS00001")
    tops = [store.post(state, Message("", "U0ALICE", f"m{i}")).ts for i in range(5)]
    store.post(state, Message("", "U0TROUPEA", "reply to m1", thread_ts=tops[1]))
    store.post(state, Message("", "U0TROUPEA", "reply to m3", thread_ts=tops[3]))

    shown, older = recent(state, 3)
    assert [m.text for m in shown] == ["m2", "m3", "m4", "reply to m3"]
    assert older == 2
    everything, none = recent(state, 300)
    assert len(everything) == 7 and none == 0
