"""troupe.locks: lock records written and read back; expiry; who is blocked (pure)."""

from __future__ import annotations

from troupe.locks import Lock, lock_on, lock_text, read_lock, read_locks

FLEET = {"U0BOT"}
NOW = 1_800_000_000.0


def message(text: str, ts: str = "1800000000.000100", user: str = "U0BOT") -> dict[str, str]:
    return {"text": text, "ts": ts, "user": user}


def test_a_lock_reads_back_as_written() -> None:
    text = lock_text("web", "U0ALICE", NOW + 3600, "db migration · step 2")
    lock = read_lock(message(text), FLEET)
    assert lock == Lock("web", "U0ALICE", NOW + 3600, "db migration · step 2", "1800000000.000100")
    forever = read_lock(message(lock_text("db", "U0BOB", None, None)), FLEET)
    assert forever is not None and forever.until is None and forever.reason is None


def test_only_fleet_messages_that_look_like_locks_count() -> None:
    text = lock_text("web", "U0ALICE", None, None)
    assert read_lock(message(text, user="U0MALLORY"), FLEET) is None  # a person's copy
    assert read_lock(message("web is locked, I promise"), FLEET) is None


def test_expired_locks_block_nobody_and_owners_pass_their_own() -> None:
    lock = Lock("web", "U0ALICE", NOW - 1, None, "1")
    assert lock.expired(NOW) and not lock.blocks("U0BOB", NOW)
    live = Lock("web", "U0ALICE", NOW + 60, None, "2")
    assert live.blocks("U0BOB", NOW) and not live.blocks("U0ALICE", NOW)


def test_lock_on_picks_the_oldest_live_lock_of_that_environment() -> None:
    pinned = [
        message(lock_text("web", "U0CAROL", None, None), ts="1800000000.000300"),
        message(lock_text("web", "U0ALICE", NOW - 5, None), ts="1800000000.000100"),  # expired
        message(lock_text("web", "U0BOB", None, None), ts="1800000000.000200"),
        message(lock_text("db", "U0DAVE", None, None), ts="1800000000.000050"),
    ]
    locks = read_locks(pinned, FLEET)
    held = lock_on(locks, "web", NOW)
    assert held is not None and held.owner == "U0BOB"
    assert lock_on(locks, "cache", NOW) is None
