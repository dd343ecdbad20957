"""An owner dies, stalls or loses Slack mid-playbook: another replica takes over and
resumes from the journal; the old owner, if it comes back, touches nothing more.

The `slow` playbook runs one host per batch: `work` (`sleep {{ pause }}`), then `append`
(the ledger); both write a line to the trace file, naming the replica. Lease 3s,
heartbeat 1s, sweep every 1s (tests/e2e/fleet.py: Timings).
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.conftest import Harness
from tests.e2e.fleet import (
    ClaimSeen,
    Fleet,
    Thread,
    assert_all_succeeded,
    first_owner,
    lease_of,
    poll,
    wait_step,
)

pytestmark = pytest.mark.integration  # real processes on loopback


def takeover(fleet: Fleet, ts: str, before: ClaimSeen, timeout: float = 0) -> ClaimSeen:
    """Wait for a newer generation's claim record; return its winner."""
    t = fleet.timings

    def newer() -> ClaimSeen | None:
        owner = fleet.slack.thread(ts).owner
        return owner if owner is not None and owner.generation > before.generation else None

    return poll(
        newer,
        timeout or t.lease + t.heartbeat + t.sweep_interval + 10,
        "another replica to take over",
        0.1,
        explain=lambda: fleet.slack.thread(ts).dump(),
    )


def assert_timely_takeover(
    fleet: Fleet, thread: Thread, old: ClaimSeen, new: ClaimSeen, silent_since: float
) -> None:
    """Taken over by another replica, never before the old lease ran out, and within
    lease + heartbeat + sweep interval (+ settle and 2s of processing) of the owner's end."""
    t = fleet.timings
    assert new.replica != old.replica and new.generation == old.generation + 1, thread.dump()
    took_over_at = float(new.ts)
    assert took_over_at >= lease_of(thread, old), f"taken over too early:\n{thread.dump()}"
    bound = t.lease + t.heartbeat + t.sweep_interval + t.settle + 2.0
    waited = took_over_at - silent_since
    assert waited <= bound, f"takeover after {waited:.1f}s > {bound:.1f}s:\n{thread.dump()}"


def journaled_by(thread: Thread, generation: int) -> set[str]:
    return {h for j in thread.journal if j.generation == generation for h in j.hosts}


def lost_record(fleet: Fleet, ts: str, replica: str) -> Thread:
    """Wait for `replica`'s `:octagonal_sign: REPLICA stopped: ...` in the thread."""
    prefix = f":octagonal_sign: {replica} stopped:"

    def said() -> Thread | None:
        thread = fleet.slack.thread(ts)
        return thread if any(r.startswith(prefix) for r in thread.lost_records) else None

    return poll(
        said, 15, f"{replica} to say that it stopped", explain=lambda: fleet.slack.thread(ts).dump()
    )


@pytest.mark.timeout(90)
def test_owner_killed_mid_playbook_another_resumes_from_the_journal(e2e: Harness) -> None:
    """kill -9 of the owner inside batch 2 (batch 1 journaled, `work` on slow2 started):
    batch 1 never runs again, batch 2 (not journaled) runs again, then 3 and 4."""
    fleet, alice = e2e.fleet(replicas=3)
    ts = alice.deploy("slow", "k1")
    first = first_owner(fleet, ts, journaled=True)
    wait_step(fleet, "k1", "slow2", "work", first.replica)
    fleet.replicas[first.replica].signal(signal.SIGKILL)
    killed_at = time.time()

    second = takeover(fleet, ts, first)
    thread = fleet.wait_done([ts], timeout=30)[ts]
    fleet.wait_no_pins()
    assert_timely_takeover(fleet, thread, first, second, killed_at)

    assert journaled_by(thread, 1) == {"slow1"}, thread.dump()
    rerun = [s for s in fleet.trace() if s.replica != first.replica and s.host == "slow1"]
    assert not rerun, f"a journaled batch ran again: {rerun}"
    assert journaled_by(thread, 2) == {"slow2", "slow3", "slow4"}, thread.dump()
    fleet.assert_exactly_once(["k1"], fleet.slow_hosts)
    assert_all_succeeded({ts: thread}, fleet.bot_users)


@pytest.mark.timeout(90)
def test_stalled_owner_wakes_up_fenced_and_says_so(e2e: Harness) -> None:
    """SIGSTOP the owner inside batch 2's `work` (batch 1 journaled), past its lease;
    SIGCONT once another replica has taken over. The step's own process (in its own
    session) has finished meanwhile, so the woken owner is between two steps: it must
    start no further step (no `append` on slow2), say in the thread that it stopped, and
    every ledger must have the id once."""
    fleet, alice = e2e.fleet(replicas=3)
    ts = alice.deploy("slow", "z1")
    first = first_owner(fleet, ts, journaled=True)
    wait_step(fleet, "z1", "slow2", "work", first.replica)
    zombie = fleet.replicas[first.replica]
    zombie.signal(signal.SIGSTOP)
    stopped_at = time.time()

    second = takeover(fleet, ts, first)
    woke_at = time.time()
    zombie.signal(signal.SIGCONT)
    thread = fleet.wait_done([ts], timeout=30)[ts]
    fleet.wait_no_pins()
    assert_timely_takeover(fleet, thread, first, second, stopped_at)

    thread = lost_record(fleet, ts, zombie.name)
    late = [s for s in fleet.trace() if s.replica == zombie.name and s.at >= woke_at]
    assert not late, f"{zombie.name} ran steps after it woke up past its lease: {late}"
    assert journaled_by(thread, 1) == {"slow1"}, thread.dump()
    fleet.assert_exactly_once(["z1"], fleet.slow_hosts)
    assert_all_succeeded({ts: thread}, fleet.bot_users)


@pytest.mark.timeout(90)
def test_owner_whose_lease_ran_out_inside_a_step_starts_no_further_step(e2e: Harness) -> None:
    """conversations.replies fails (internal_error, every call) from the start of a 6 s
    step: the owner cannot renew, and its 3 s lease runs out inside the step. When the step
    ends it must stop (say so) rather than start `append`; once Slack recovers, another
    replica takes over and runs the host, so the ledger has the id once."""
    fleet, alice = e2e.fleet(replicas=3)
    ts = alice.deploy("slow", "u1", "to", "slow1", "pause=6")
    first = first_owner(fleet, ts)
    wait_step(fleet, "u1", "slow1", "work", first.replica)
    fleet.slack.put_faults({"errors": [{"method": "conversations.replies"}]})
    lost_record(fleet, ts, first.replica)  # chat.postMessage still works
    fleet.slack.put_faults({})

    thread = fleet.wait_done([ts], timeout=45)[ts]
    fleet.wait_no_pins()
    expired = lease_of(thread, first)
    # Until the next generation's first record: the old owner may well be the new one.
    taken = min(float(c.ts) for c in thread.claims if c.generation > first.generation)
    late = [s for s in fleet.trace() if s.replica == first.replica and expired <= s.at < taken]
    assert not late, f"{first.replica} started steps after its lease ran out: {late}"
    fleet.assert_exactly_once(["u1"], ["slow1"])
    assert_all_succeeded({ts: thread}, fleet.bot_users)
