"""The fleet updates itself: three replicas, each running from its own clone of a bare
repository (tests/e2e/gitfleet.py), under its supervisor, against localslack.

Bounds asserted here (measured, see docs/self-update.md): a deploy posted during the
update waits at most WAIT_BOUND seconds for a replica to claim it; at least two of the
three replicas are connected to Slack at every moment (/admin/connections, sampled every
0.1 s).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.e2e.conftest import Harness
from tests.e2e.fleet import (
    ClaimSeen,
    LocalSlack,
    Person,
    Thread,
    Timings,
    assert_all_succeeded,
    identities,
    poll,
)
from tests.e2e.gitfleet import PROBATION, GitFleet

pytestmark = pytest.mark.integration  # real processes on loopback

NAMES = ["replica-1", "replica-2", "replica-3"]
WAIT_BOUND = 15.0  # seconds from posting a deploy to its first claim, during the update
TIMINGS = Timings()  # lease 3s, heartbeat 1s, sweep 1s


def git_fleet(e2e: Harness) -> tuple[GitFleet, Person]:
    root = e2e.workdir / f"fleet{len(e2e.fleets) + 1}"
    root.mkdir()
    who = identities(NAMES, shared=False)
    slack = LocalSlack(root, who.values(), ("--rate-limits", "off"))
    e2e.servers.append(slack)
    slack.start()
    fleet = GitFleet(root, slack, who, timings=TIMINGS)
    e2e.fleets.append(fleet)
    fleet.start()
    return fleet, Person(slack.api_url)


def self_update(alice: Person, ref: str) -> str:
    """`@troupe self-update REF`: the playbook over `replicas`, the claimer's host last."""
    return alice.say(f"troupe self-update {ref}")


class Connections:
    """Samples how many replicas (apps) have a Socket Mode connection, every 0.1 s."""

    def __init__(self, fleet: GitFleet) -> None:
        self.fleet = fleet
        self.apps = {r.identity.app_id for r in fleet.replicas.values()}
        self.fewest = len(self.apps)
        self.samples = 0
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            connected = self.fleet.slack.connections()
            self.fewest = min(self.fewest, sum(connected.get(a, 0) > 0 for a in self.apps))
            self.samples += 1

    @contextmanager
    def watching(self) -> Iterator[Connections]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(5)


def old_versions(thread: Thread) -> dict[str, str]:
    """replica -> the version captured before its update (the journal's `previous`)."""
    found: dict[str, str] = {}
    for text in thread.texts():
        if text.startswith(":notebook: batch ") and "previous `" in text:
            previous = json.loads(text.split("previous `", 1)[1].split("`", 1)[0])
            found |= {host: seen["version"] for host, seen in previous.items()}
    return found


def done_text(thread: Thread) -> str:
    return "\n".join(thread.texts())


def roll_call_versions(fleet: GitFleet, alice: Person) -> dict[str, str]:
    """`troupe roll call`: each replica's answer, replica -> version label."""
    ts = alice.say("troupe roll call")

    def answers() -> dict[str, str] | None:
        found = {}
        for text in fleet.slack.thread(ts).texts():
            for name in NAMES:
                if f"*{name}* here · version " in text:
                    found[name] = text.split(" · version ", 1)[1]
        return found if len(found) == len(NAMES) else None

    return poll(answers, 30, "every replica to answer the roll call", 0.5)


@pytest.mark.timeout(240)
def test_self_update_rolls_the_fleet_while_deploys_keep_flowing(e2e: Harness) -> None:
    """A new commit changes `__version__`; `troupe self-update <sha>` updates the three
    replicas one at a time (the claiming one hands its claim over when its own turn
    comes); a deploy is posted every second meanwhile."""
    fleet, alice = git_fleet(e2e)
    new = fleet.push_version("0.2.0")
    with Connections(fleet).watching() as connections:
        ts = self_update(alice, new)
        stream: list[str] = []
        thread = fleet.slack.thread(ts)
        # One a second, at most 100 (the update takes about 20 s; the cap only bounds a
        # stuck run, well within the sweeper's five pages of history).
        while not _finished(thread) and len(stream) < 100:
            stream.append(alice.deploy("ledger", f"s{len(stream):03d}"))
            time.sleep(1)
            thread = fleet.slack.thread(ts)
        done = fleet.wait_done([ts], timeout=120)
    update = done[ts]
    assert_all_succeeded(done, fleet.bot_users)
    assert {fleet.head(n) for n in NAMES} == {new}, update.dump()
    assert {fleet.running(n) for n in NAMES} == {new}, update.dump()
    versions = roll_call_versions(fleet, alice)
    assert all(v.startswith(f"0.2.0 · {new[:7]}") for v in versions.values()), versions
    # The claimer's own host came last, and whoever took the command over ran it.
    claimer = min((c for c in update.claims if c.generation == 1), key=lambda c: float(c.ts))
    last = update.journal[-1]
    assert last.hosts == (claimer.replica,) and last.generation >= 2, update.dump()
    # Each replica's old version, captured before its update, is in the journal.
    assert old_versions(update) == dict.fromkeys(NAMES, f"0.1.0 · {fleet.first[:7]} · v-start")
    # The thread shows each replica's old → new version, and ends with a census.
    texts = update.texts()
    for name in NAMES:
        said = [t for t in texts if t.startswith(f":speech_balloon: `{name}`: {name}: 0.1.0")]
        assert said and f"→ 0.2.0 · {new[:7]}" in said[-1], update.dump()
    census = next((t for t in texts if t.startswith(":bar_chart: *Census* after")), "")
    assert f"replicas: all on 0.2.0 · {new[:7]}" in census, update.dump()
    # The stream: every deploy ran once, none waited long for a replica, and the
    # channel always had at least two replicas connected.
    finished = fleet.wait_done(stream, timeout=60)
    assert_all_succeeded(finished, fleet.bot_users)
    fleet.assert_exactly_once([f"s{i:03d}" for i in range(len(stream))], fleet.ledger_hosts)
    waits = {
        t.ts: float(min(t.claims, key=lambda c: float(c.ts)).ts) - float(t.ts)
        for t in finished.values()
    }
    assert max(waits.values()) <= WAIT_BOUND, sorted(waits.values())[-5:]
    assert connections.samples > 50 and connections.fewest >= 2, connections.fewest
    print(f"stream: {len(stream)} deploys, longest wait {max(waits.values()):.1f}s")
    took = float(update.replies[-1]["ts"]) - float(update.ts)
    stamps = [float(j.ts) for j in update.journal]
    gaps = ", ".join(f"{b - a:.1f}s" for a, b in itertools.pairwise(stamps))
    print(
        f"self-update: {took:.1f}s, {gaps} between batches, fewest connected {connections.fewest}"
    )


def _finished(thread: Thread) -> bool:
    return any(r in thread.reactions() for r in ("white_check_mark", "x"))


@pytest.mark.timeout(180)
def test_a_broken_commit_is_reverted_and_stops_the_rollout(e2e: Harness) -> None:
    fleet, alice = git_fleet(e2e)
    old = fleet.first
    broken = fleet.push_broken()
    ts = self_update(alice, broken)
    done = fleet.wait_done([ts], timeout=PROBATION + 90)
    thread = done[ts]
    assert "x" in thread.reactions(), thread.dump()
    assert len(thread.done_records) == 1, thread.dump()
    # Reverted because it exited, not because the probation ran out: within the probation.
    why = "was reverted: it exited with code 1: this version cannot start: broken on purpose"
    assert why in done_text(thread), thread.dump()
    assert {fleet.head(n) for n in NAMES} == {old}
    poll(lambda: {fleet.running(n) for n in NAMES} == {old}, 30, "the old version everywhere")
    reverted = [n for n in NAMES if fleet.verdict(n) == f"reverted {broken}"]
    assert len(reverted) == 1, {n: fleet.verdict(n) for n in NAMES}
    versions = roll_call_versions(fleet, alice)
    assert all(v.startswith(f"0.1.0 · {old[:7]}") for v in versions.values()), versions


@pytest.mark.timeout(240)
def test_the_claimer_killed_while_it_restarts_another_finishes(e2e: Harness) -> None:
    """The claiming replica's own turn: it asks its supervisor to restart it, and is
    killed (supervisor and replica) right then. It comes back as a service manager would
    restart it; another replica has taken the command over and finishes it."""
    fleet, alice = git_fleet(e2e)
    new = fleet.push_version("0.3.0")
    ts = self_update(alice, new)
    owner = poll(lambda: fleet.slack.thread(ts).owner, 30, "a claim").replica
    poll(
        lambda: fleet.verdict(owner) == f"running {new}",
        120,
        f"{owner}'s own restart",
        0.05,
        explain=lambda: fleet.slack.thread(ts).dump(),
    )
    fleet.kill(owner)

    def taken_over() -> ClaimSeen | None:
        now = fleet.slack.thread(ts).owner
        return now if now is not None and now.replica != owner else None

    finisher = poll(taken_over, 30, "another replica to take over", 0.1)
    assert finisher.generation >= 2
    fleet.start([owner])  # as a service manager would; it finishes its probation
    done = fleet.wait_done([ts], timeout=120)
    thread = done[ts]
    assert_all_succeeded(done, fleet.bot_users)
    assert len(thread.done_records) == 1 and thread.owner is not None, thread.dump()
    # The killed replica's host was run (and its verdict awaited) by a later generation.
    assert any(owner in j.hosts and j.generation >= 2 for j in thread.journal), thread.dump()
    assert {fleet.head(n) for n in NAMES} == {new}
    poll(lambda: {fleet.running(n) for n in NAMES} == {new}, 30, "the new version everywhere")
