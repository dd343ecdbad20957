"""The claim protocol's records, read back from a thread (pure: no Slack, no clock)."""

from __future__ import annotations

from typing import Any

import pytest

from troupe.claims import (
    ClaimRecord,
    Lease,
    ThreadState,
    claim_text,
    done_text,
    journal_text,
    read_thread,
)

BOT_A, BOT_B, BOT_C = "U0TROUPEA", "U0TROUPEB", "U0TROUPEC"
ALICE = "U0ALICE"
FLEET = {BOT_A, BOT_B}
COMMAND = "1700000000.000100"
POSTED = float(COMMAND)
LEASE = Lease(seconds=30, heartbeat=10, settle=0.5, orphan_grace=30)


def parent(
    *, pinned: bool = False, reactions: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "message", "user": ALICE, "text": "deploy", "ts": COMMAND}
    if pinned:
        message["pinned_to"] = ["C0OPS00001"]
    if reactions:
        message["reactions"] = [
            {"name": name, "users": users, "count": len(users)} for name, users in reactions.items()
        ]
    return message


def reply(seconds: int, text: str, user: str = BOT_A) -> dict[str, Any]:
    """A reply `seconds` after the command; ts strings have Slack's fixed width."""
    return {"type": "message", "user": user, "text": text, "ts": f"{1700000000 + seconds}.000200"}


def thread(*replies: dict[str, Any], **parent_args: Any) -> ThreadState:
    return read_thread([parent(**parent_args), *replies], FLEET)


# ---- round trips -------------------------------------------------------------------------------


def test_claim_text_round_trips() -> None:
    until = POSTED + 42.123456
    state = thread(reply(1, claim_text("troupe-a", 3, until)))
    assert len(state.claims) == 1
    record = state.claims[0]
    assert (record.replica, record.generation, record.ts) == ("troupe-a", 3, "1700000001.000200")
    assert record.until == pytest.approx(until, abs=1e-6)
    assert state.generation == 3
    assert state.owner == record


def test_claim_text_is_what_a_person_reads() -> None:
    stamp = "1970-01-01T00:00:00.000000Z"
    text = f":lock: claimed by *troupe-b* · generation 2 · lease until {stamp}"
    assert claim_text("troupe-b", 2, 0.0) == text


def test_journal_text_with_previous_round_trips() -> None:
    previous = {"web1": {"version": "2.4.0"}, "web2": {"version": "2.3.9"}}
    state = thread(
        reply(1, claim_text("troupe-a", 1, POSTED + 30)),
        reply(2, journal_text(1, 1, ["web1", "web2"], previous)),
        reply(3, journal_text(2, 1, ["web3"], {"web3": {"version": "2.4.0"}})),
    )
    assert state.batches_done == {1, 2}
    assert state.batch_hosts == {1: ["web1", "web2"], 2: ["web3"]}
    assert state.previous == previous | {"web3": {"version": "2.4.0"}}


@pytest.mark.parametrize("previous", [None, {}], ids=["no-previous", "empty-previous"])
def test_journal_text_without_previous_round_trips(
    previous: dict[str, dict[str, str]] | None,
) -> None:
    """A batch whose hosts captured nothing is journaled without `previous` (regression:
    the parser once required that suffix, so such batches were re-run on takeover)."""
    state = thread(reply(1, journal_text(4, 1, ["web1", "web2"], previous)))
    assert state.batches_done == {4}
    assert state.batch_hosts == {4: ["web1", "web2"]}


@pytest.mark.parametrize(
    ("ok", "summary", "text"),
    [
        (True, "", ":white_check_mark: done"),
        (True, "3 hosts", ":white_check_mark: done · 3 hosts"),
        (False, "", ":x: failed"),
        (False, "web2: exit 1", ":x: failed · web2: exit 1"),
    ],
)
def test_done_text_round_trips(ok: bool, summary: str, text: str) -> None:
    assert done_text(ok, summary) == text
    assert thread(reply(1, text)).done is ok


def test_claim_record_without_fraction_is_read_not_raised() -> None:
    text = ":lock: claimed by *troupe-a* · generation 1 · lease until 2023-11-14T22:13:50Z"
    state = thread(reply(1, text))
    assert state.claims[0].until == 1700000030.0


# ---- whose records count ----------------------------------------------------------------------


@pytest.mark.parametrize("author", [ALICE, BOT_C], ids=["a-person", "a-bot-outside-the-fleet"])
def test_only_fleet_records_count(author: str) -> None:
    state = thread(
        reply(1, claim_text("troupe-a", 1, POSTED + 30), user=author),
        reply(2, journal_text(1, 1, ["web1"], {"web1": {"v": "1"}}), user=author),
        reply(3, done_text(True, "forged"), user=author),
    )
    assert state.claims == []
    assert state.batches_done == set()
    assert state.done is None


def test_owner_is_the_lowest_ts_of_the_newest_generation() -> None:
    state = thread(
        reply(1, claim_text("troupe-a", 1, POSTED + 30)),  # the old generation
        reply(40, claim_text("troupe-b", 2, POSTED + 70), user=BOT_B),  # first of gen 2
        reply(41, claim_text("troupe-a", 2, POSTED + 71)),  # a slower taker
    )
    assert state.generation == 2
    assert state.owner == ClaimRecord("troupe-b", 2, POSTED + 70, "1700000040.000200")


def test_a_yielded_record_does_not_count() -> None:
    state = thread(
        reply(1, claim_text("troupe-a", 1, POSTED + 30)),
        reply(2, ":zzz: troupe-b yields generation 1", user=BOT_B),
    )
    assert [c.replica for c in state.claims] == ["troupe-a"]


def test_no_claims_means_generation_zero_and_no_owner() -> None:
    state = thread()
    assert (state.generation, state.owner, state.done, state.pinned) == (0, None, None, False)
    assert state.posted_at == POSTED


# ---- claimable --------------------------------------------------------------------------------


def test_done_is_never_claimable() -> None:
    state = thread(reply(1, claim_text("troupe-a", 1, POSTED + 30)), reply(2, done_text(True, "")))
    assert not state.claimable(POSTED + 1000, LEASE)  # even long after the lease
    assert not thread(reply(1, done_text(False, ""))).claimable(POSTED + 1000, LEASE)


def test_live_lease_is_not_claimable_expired_is() -> None:
    state = thread(reply(1, claim_text("troupe-a", 1, POSTED + 30)), pinned=True)
    assert not state.claimable(POSTED + 29.9, LEASE)
    assert state.claimable(POSTED + 30.1, LEASE)


def test_unpinned_without_claim_is_claimable() -> None:
    assert thread().claimable(POSTED + 0.1, LEASE)


def test_orphan_pin_waits_for_its_grace() -> None:
    """Pinned, but no claim record: the pinner may be about to post it; after
    orphan_grace it is presumed dead and the command is open again."""
    state = thread(pinned=True)
    assert state.pinned
    assert not state.claimable(POSTED + LEASE.orphan_grace - 1, LEASE)
    assert state.claimable(POSTED + LEASE.orphan_grace + 1, LEASE)


# ---- done reactions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reactions", "done"),
    [
        ({"white_check_mark": [BOT_A]}, True),
        ({"x": [BOT_B]}, False),
        ({"white_check_mark": [ALICE]}, None),
        ({"x": [ALICE, BOT_C]}, None),
        ({"white_check_mark": [ALICE, BOT_B]}, True),
        ({"thumbsup": [BOT_A]}, None),
    ],
    ids=["fleet-check", "fleet-x", "person-check", "outsiders-x", "person-and-fleet", "other"],
)
def test_done_reactions_count_only_from_the_fleet(
    reactions: dict[str, list[str]], done: bool | None
) -> None:
    state = thread(reply(1, claim_text("troupe-a", 1, POSTED + 30)), reactions=reactions)
    assert state.done is done
    assert state.claimable(POSTED + 100, LEASE) is (done is None)
