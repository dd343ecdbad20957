"""The claim protocol against a real localslack, through real slack_sdk clients.

Every replica is its own Slack app (own bot user and token) with Troupe's retry policy
(`troupe.chat.make_client`); a person (alice) posts the commands and reads the threads.
Leases are short so that expiry and takeover take about a second.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from threading import Barrier
from typing import Any

import pytest
import requests
from slack_sdk import WebClient

from tests.conftest import ALICE, OPS, ServerFactory
from tests.integration.helpers import wait_for
from troupe.chat import Chat, make_client
from troupe.claims import Claim, Claimer, ClaimLost, Lease, ThreadState, read_thread
from troupe.localslack.faults import ErrorFault, Faults
from troupe.localslack.server import ThreadedLocalSlack
from troupe.localslack.workspace import default_workspace

# Races: a long lease (nobody expires), a short settle (localslack is read-your-writes).
RACE = Lease(seconds=30, heartbeat=10, settle=0.05, orphan_grace=30)
# Takeovers: expiry after a second; guard() re-reads after 1 - 0.3 = 0.7 s of silence.
SHORT = Lease(seconds=1.0, heartbeat=0.3, settle=0.1, orphan_grace=0.8)
YIELD = ":zzz: "


ChatFactory = Callable[[WebClient, str], Chat]


class Fleet:
    """Replicas troupe-<letter> of one workspace, and alice to post and read."""

    def __init__(self, server: ThreadedLocalSlack, letters: str, lease: Lease = RACE) -> None:
        self.server = server
        self.letters = letters
        self.lease = lease
        self.users = {f"U0TROUPE{x.upper()}" for x in letters}
        self.alice = Chat(make_client(ALICE, server.api_url), OPS)

    def claimer(self, x: str, chat: ChatFactory = Chat, lease: Lease | None = None) -> Claimer:
        client = make_client(f"xoxb-troupe-{x}", self.server.api_url)
        return Claimer(chat(client, OPS), f"troupe-{x}", self.users, lease or self.lease)

    def bot(self, x: str) -> WebClient:
        return make_client(f"xoxb-troupe-{x}", self.server.api_url)

    def command(self, text: str = "@troupe deploy web") -> str:
        return self.alice.post(text)

    def thread(self, ts: str) -> list[dict[str, Any]]:
        return self.alice.thread(ts)

    def state(self, ts: str) -> ThreadState:
        return read_thread(self.thread(ts), self.users)

    def replies(self, ts: str) -> list[str]:
        return self.texts(self.thread(ts))

    def texts(self, thread: list[dict[str, Any]]) -> list[str]:
        """The replies the fleet's bots posted."""
        return [m["text"] for m in thread[1:] if m.get("user") in self.users]

    def set_faults(self, faults: Faults) -> None:
        url = self.server.url + "/admin/faults"
        assert requests.put(url, data=faults.model_dump_json(), timeout=5).json()["ok"]

    def calls(self) -> dict[str, dict[str, int]]:
        reply = requests.get(self.server.url + "/admin/calls", timeout=5)
        calls: dict[str, dict[str, int]] = reply.json()
        return calls

    def wait_claimable(self, ts: str, lease: Lease | None = None) -> None:
        lease = lease or self.lease
        wait_for(lambda: self.state(ts).claimable(time.time(), lease), 5, f"{ts} claimable")


@dataclass
class Attempt:
    ts: str
    claimer: Claimer
    claim: Claim | None


def race(fleet: Fleet, commands: list[str], letters: str | None = None) -> dict[str, Attempt]:
    """Every replica tries every command, all at once (one thread each, released per
    command by a barrier); returns the one winner per command, failing on none or two."""
    letters = letters or fleet.letters
    gates = {ts: Barrier(len(letters), timeout=30) for ts in commands}

    def attempt(ts: str, x: str) -> Attempt:
        claimer = fleet.claimer(x)
        gates[ts].wait()
        return Attempt(ts, claimer, claimer.try_claim(ts))

    with ThreadPoolExecutor(len(commands) * len(letters)) as pool:
        futures = [pool.submit(attempt, ts, x) for ts in commands for x in letters]
        attempts = [f.result() for f in futures]
    wins: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        if a.claim is not None:
            wins[a.ts].append(a)
    assert {ts: len(wins[ts]) for ts in commands} == dict.fromkeys(commands, 1)
    return {ts: wins[ts][0] for ts in commands}


def check_one_owner(fleet: Fleet, win: Attempt) -> int:
    """The thread names the winner as the only generation-1 owner; every other claim record
    a replica posted was yielded. Returns how many were yielded."""
    assert win.claim is not None
    messages = fleet.thread(win.ts)
    state = read_thread(messages, fleet.users)
    assert state.owner is not None
    assert (state.owner.ts, state.owner.replica) == (win.claim.record_ts, win.claimer.replica)
    assert [c.generation for c in state.claims] == [1]
    assert win.claim.generation == 1
    records = (":lock:", ":white_check_mark: done", ":x: failed")
    others = [t for t in fleet.texts(messages) if not t.startswith(records)]
    assert all(t.startswith(YIELD) and t.endswith("yields generation 1") for t in others)
    return len(others)


def finish_all(wins: dict[str, Attempt]) -> None:
    def finish(win: Attempt) -> None:
        assert win.claim is not None
        win.claimer.finish(win.claim, ok=True, summary="deployed")

    with ThreadPoolExecutor(len(wins)) as pool:
        list(pool.map(finish, wins.values()))


def check_done(fleet: Fleet, wins: dict[str, Attempt]) -> None:
    """Every command is done for good (record + ✅ by its winner), and no pin is left."""
    for ts, win in wins.items():
        messages = fleet.thread(ts)
        state = read_thread(messages, fleet.users)
        assert (state.done, state.pinned) == (True, False)
        assert sum(t.startswith(":white_check_mark: done") for t in fleet.texts(messages)) == 1
        reactions = messages[0]["reactions"]
        bot = "U0TROUPE" + win.claimer.replica[-1].upper()
        assert reactions == [{"name": "white_check_mark", "users": [bot], "count": 1}]
    assert fleet.alice.pinned() == set()


# ---- races --------------------------------------------------------------------------------------


def test_five_replicas_race_for_thirty_commands(make_server: ServerFactory) -> None:
    fleet = Fleet(make_server(default_workspace("abcde")), "abcde")
    commands = [fleet.command(f"@troupe deploy web #{i}") for i in range(30)]
    wins = race(fleet, commands)
    for win in wins.values():
        check_one_owner(fleet, win)
    assert fleet.alice.pinned() == set(commands)
    finish_all(wins)
    check_done(fleet, wins)
    for ts in commands:  # done is permanent: nobody claims it again
        assert fleet.claimer("e").try_claim(ts) is None


def test_non_atomic_pins_still_one_winner(make_server: ServerFactory) -> None:
    """Several pins.add calls on one message all succeed; the thread decides."""
    server = make_server(default_workspace("abcde"), faults=Faults(non_atomic_pins_ms=200))
    fleet = Fleet(server, "abcde")
    commands = [fleet.command(f"@troupe deploy web #{i}") for i in range(20)]
    wins = race(fleet, commands)
    yielded = sum(check_one_owner(fleet, win) for win in wins.values())
    assert fleet.calls()["pins.add"]["ok"] > len(commands)  # the fault did let several pin
    assert yielded > 0  # ... so losers posted records, and yielded them
    finish_all(wins)
    check_done(fleet, wins)


@pytest.mark.parametrize(
    "fault",
    [
        ErrorFault(method="*", error="internal_error", probability=0.1),
        ErrorFault(method="*", error="service_unavailable", status=503, probability=0.1),
    ],
    ids=["internal_error", "http-503"],
)
def test_transient_errors_are_absorbed(make_server: ServerFactory, fault: ErrorFault) -> None:
    """One call in ten fails, whatever the method, while the replicas claim and finish;
    the retry handlers absorb it."""
    fleet = Fleet(make_server(seed=4), "abc")
    commands = [fleet.command(f"@troupe deploy web #{i}") for i in range(10)]
    fleet.set_faults(Faults(errors=[fault]))
    wins = race(fleet, commands)
    finish_all(wins)
    fleet.set_faults(Faults())  # faults off to look at the result
    injected = sum(c.get(fault.error, 0) for c in fleet.calls().values())
    assert injected > 0
    for win in wins.values():
        check_one_owner(fleet, win)
    check_done(fleet, wins)


def test_rate_limits_are_waited_out(make_server: ServerFactory) -> None:
    """rate_limit_scale=10: Slack's bursts, ten times Slack's refill rates. Each winner
    posts a claim record, three journal entries and a done record in a burst, more than
    chat.postMessage's burst of 5 per app and channel: localslack answers 429 with
    Retry-After: 1, slack_sdk's RateLimitErrorRetryHandler waits, and nothing is lost."""
    fleet = Fleet(make_server(rate_limit_scale=10), "abc")
    commands = [fleet.command(f"@troupe deploy web #{i}") for i in range(6)]
    wins = race(fleet, commands)

    def run(win: Attempt) -> None:
        assert win.claim is not None
        for batch in (1, 2, 3):
            win.claimer.journal(win.claim, batch, [f"web{batch}"], {f"web{batch}": {"v": "1"}})
        win.claimer.finish(win.claim, ok=True)

    with ThreadPoolExecutor(len(wins)) as pool:
        list(pool.map(run, wins.values()))
    for win in wins.values():
        assert fleet.state(win.ts).batches_done == {1, 2, 3}
    check_done(fleet, wins)
    assert fleet.calls()["chat.postMessage"].get("ratelimited", 0) > 0


# ---- takeover and fencing -----------------------------------------------------------------------


def test_expired_lease_is_taken_over_and_the_old_owner_fenced(server: ThreadedLocalSlack) -> None:
    fleet = Fleet(server, "abc", SHORT)
    ts = fleet.command()
    old, new = fleet.claimer("a"), fleet.claimer("b")
    claim = old.try_claim(ts)
    assert claim is not None and claim.generation == 1
    assert new.try_claim(ts) is None  # the lease is live
    fleet.wait_claimable(ts)  # troupe-a stalls: no heartbeat
    taken = new.try_claim(ts)
    assert taken is not None and taken.generation == 2
    with pytest.raises(ClaimLost, match=r"troupe-a lost the claim on \S+: "):
        old.guard(claim)  # silent for more than lease - heartbeat: it re-reads the thread
    with pytest.raises(ClaimLost):
        old.heartbeat(claim)
    new.heartbeat(taken)
    new.finish(taken, ok=True)
    state = fleet.state(ts)
    assert (state.done, state.pinned, state.generation) == (True, False, 2)
    assert old.try_claim(ts) is None


def test_two_takers_one_wins_the_next_generation(server: ThreadedLocalSlack) -> None:
    fleet = Fleet(server, "abc", SHORT)
    ts = fleet.command()
    claim = fleet.claimer("a").try_claim(ts)
    assert claim is not None
    fleet.wait_claimable(ts)
    win = race(fleet, [ts], letters="bc")[ts]
    assert win.claim is not None and win.claim.generation == 2
    state = fleet.state(ts)
    assert state.owner is not None and state.owner.ts == win.claim.record_ts
    assert [c.generation for c in state.claims] == [1, 2]  # a loser's record was yielded
    win.claimer.finish(win.claim, ok=True)


def test_journal_is_resumed_by_the_next_generation(server: ThreadedLocalSlack) -> None:
    fleet = Fleet(server, "abc", SHORT)
    ts = fleet.command()
    first = fleet.claimer("a")
    claim = first.try_claim(ts)
    assert claim is not None and claim.batches_done == set()
    first.journal(claim, 1, ["web1", "web2"], {"web1": {"v": "2.4.0"}, "web2": {"v": "2.4.0"}})
    first.journal(claim, 2, ["web3"])  # nothing captured on web3
    assert claim.batches_done == {1, 2}
    fleet.wait_claimable(ts)
    taken = fleet.claimer("b").try_claim(ts)
    assert taken is not None and taken.generation == 2
    assert taken.batches_done == {1, 2}
    assert taken.previous == {"web1": {"v": "2.4.0"}, "web2": {"v": "2.4.0"}}
    assert fleet.state(ts).batch_hosts == {1: ["web1", "web2"], 2: ["web3"]}


def test_hand_off_lets_another_replica_claim_at_once(server: ThreadedLocalSlack) -> None:
    fleet = Fleet(server, "abc")  # a 30 s lease: only the hand-off can end it now
    ts = fleet.command()
    leaving, staying = fleet.claimer("a"), fleet.claimer("b")
    claim = leaving.try_claim(ts)
    assert claim is not None
    assert staying.try_claim(ts) is None
    leaving.hand_off(claim, "shutting down")
    assert ":wave: troupe-a hands over: shutting down" in fleet.replies(ts)
    taken = staying.try_claim(ts)
    assert taken is not None and taken.generation == 2
    assert ts in fleet.alice.pinned()  # not done, so still pinned
    with pytest.raises(ClaimLost):
        leaving.heartbeat(claim)
    staying.finish(taken, ok=False, summary="rolled back")
    state = fleet.state(ts)
    assert (state.done, state.pinned) == (False, False)
    assert fleet.thread(ts)[0]["reactions"][0]["name"] == "x"


def test_orphan_pin_is_taken_over_after_its_grace(server: ThreadedLocalSlack) -> None:
    """A replica pinned the command and died before posting its claim record."""
    fleet = Fleet(server, "abc", SHORT)
    ts = fleet.command()
    fleet.bot("c").pins_add(channel=OPS, timestamp=ts)
    sweeper = fleet.claimer("a")
    assert sweeper.try_claim(ts) is None  # within orphan_grace: the pinner may yet post
    # The grace runs from when this replica first saw the orphan pin (its first try).
    claim = wait_for(lambda: sweeper.try_claim(ts), 5, "the orphan pin to be adopted")
    assert claim.generation == 1
    assert fleet.calls()["pins.add"] == {"ok": 1}  # the pin was adopted, not re-added
    sweeper.finish(claim, ok=True)
    assert fleet.alice.pinned() == set()


# ---- the cost of a command ----------------------------------------------------------------------


def test_calls_spent_by_a_winner_and_a_late_loser(server: ThreadedLocalSlack) -> None:
    """The numbers docs/claims.md quotes."""
    fleet = Fleet(server, "abc")
    ts = fleet.command()
    owner, late = fleet.claimer("a"), fleet.claimer("b")
    spent = Spent(fleet)
    claim = owner.try_claim(ts)
    assert claim is not None
    assert spent() == {"conversations.replies": 2, "pins.add": 1, "chat.postMessage": 1}
    owner.guard(claim)  # heartbeats are fresh: no call
    assert spent() == {}
    owner.heartbeat(claim)
    assert spent() == {"conversations.replies": 1, "chat.update": 1}
    owner.journal(claim, 1, ["web1"], {"web1": {"v": "1"}})
    assert spent() == {"chat.postMessage": 1}
    assert late.try_claim(ts) is None
    assert spent() == {"conversations.replies": 1}
    owner.finish(claim, ok=True)
    assert spent() == {"chat.postMessage": 1, "reactions.add": 1, "pins.remove": 1}


class Spent:
    """Calls made since the last look (any outcome), by method."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.last = self.totals()

    def totals(self) -> dict[str, int]:
        return {m: sum(o.values()) for m, o in self.fleet.calls().items()}

    def __call__(self) -> dict[str, int]:
        now = self.totals()
        spent = {m: n - self.last.get(m, 0) for m, n in now.items() if n != self.last.get(m, 0)}
        self.last = now
        return spent


# ---- weaknesses found in troupe/claims.py (xfail until fixed) ----------------------------------


class HookedChat(Chat):
    """A Chat that runs `before_post` just before each chat.postMessage."""

    def __init__(self, client: WebClient, channel: str, before_post: Callable[[], None]) -> None:
        super().__init__(client, channel)
        self.before_post = before_post

    def post(self, text: str, thread_ts: str | None = None, **extra: Any) -> str:
        self.before_post()
        return super().post(text, thread_ts, **extra)


def test_a_lapsed_owner_cannot_pass_guard_once_taken_over(server: ThreadedLocalSlack) -> None:
    fleet = Fleet(server, "abc", SHORT)
    ts = fleet.command()
    old = fleet.claimer("a")
    claim = old.try_claim(ts)
    assert claim is not None
    fleet.wait_claimable(ts)  # troupe-a stalled past its lease ...
    renewed: list[bool] = []

    def old_owner_wakes_up() -> None:  # ... and heartbeats between the taker's read and post
        if not renewed:
            try:
                old.heartbeat(claim)
                renewed.append(True)
            except ClaimLost:
                renewed.append(False)

    taker = fleet.claimer("b", lambda c, ch: HookedChat(c, ch, old_owner_wakes_up))
    taken = taker.try_claim(ts)
    assert renewed  # the interleaving happened
    may_touch_hosts = []  # who passes guard() now: exactly one of them may
    for claimer, held in ((old, claim), (taker, taken)):
        if held is not None:
            try:
                claimer.guard(held)
                may_touch_hosts.append(claimer.replica)
            except ClaimLost:
                pass
    assert len(may_touch_hosts) == 1, may_touch_hosts


@pytest.mark.parametrize("status", [503, 200], ids=["http-503", "internal_error"])
def test_a_retried_pin_still_claims(server: ThreadedLocalSlack, status: int) -> None:
    """pins.add takes effect but its answer is lost (a 503, or an internal_error); the retry
    answers already_pinned: the replica must still claim, not wait orphan_grace."""
    fleet = Fleet(server, "abc")
    ts = fleet.command()
    lost = ErrorFault(method="pins.add", status=status, count=1, after=True)
    fleet.set_faults(Faults(errors=[lost]))
    claim = fleet.claimer("a").try_claim(ts)
    assert claim is not None, fleet.replies(ts)
    # The first answer was lost, the retry said already_pinned: one pin, ours.
    assert fleet.calls()["pins.add"] == {"internal_error": 1, "already_pinned": 1}
    assert fleet.claimer("b").try_claim(ts) is None  # and it is still only one claim


def test_a_pin_lost_to_another_replica_is_not_mistaken_for_ours(
    server: ThreadedLocalSlack,
) -> None:
    """A plain already_pinned (no retry) is a lost race, as before."""
    fleet = Fleet(server, "abc")
    ts = fleet.command()
    fleet.bot("b").pins_add(channel=OPS, timestamp=ts)
    assert not Chat(fleet.bot("a"), OPS).pin(ts)


class RetriedPostChat(Chat):
    """chat.postMessage of a claim record whose first attempt took effect but whose answer
    was lost, so the retry handler posted it again."""

    def post(self, text: str, thread_ts: str | None = None, **extra: Any) -> str:
        if text.startswith(":lock:"):
            super().post(text, thread_ts, **extra)
        return super().post(text, thread_ts, **extra)


def test_a_duplicated_claim_record_still_claims(server: ThreadedLocalSlack) -> None:
    fleet = Fleet(server, "abc")
    ts = fleet.command()
    claim = fleet.claimer("a", RetriedPostChat).try_claim(ts)
    assert claim is not None


def test_a_fresh_pin_on_an_old_command_gets_its_grace(server: ThreadedLocalSlack) -> None:
    fleet = Fleet(server, "abc", SHORT)
    ts = fleet.command()
    time.sleep(SHORT.orphan_grace + 0.1)  # the command waited (e.g. every replica was down)
    fleet.bot("c").pins_add(channel=OPS, timestamp=ts)  # troupe-c just won the pin
    assert fleet.claimer("a").try_claim(ts) is None


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_are_retried(make_server: ServerFactory, status: int) -> None:
    fault = ErrorFault(method="pins.add", error="internal_error", status=status, count=1)
    fleet = Fleet(make_server(faults=Faults(errors=[fault])), "abc")
    ts = fleet.command()
    assert fleet.claimer("a").try_claim(ts) is not None


def test_history_reads_more_pages_when_asked(server: ThreadedLocalSlack) -> None:
    """The sweeper reads several pages, so a command under 200 newer ones is still found."""
    fleet = Fleet(server, "a")
    first = fleet.command("@troupe deploy web id=buried")
    for i in range(230):
        fleet.alice.post(f"chatter {i}")
    chat = Chat(fleet.bot("a"), OPS)
    assert first not in [m["ts"] for m in chat.history(limit=200)]
    every = chat.history(limit=200, pages=5)
    assert len(every) == 231 and every[-1]["ts"] == first  # newest first, all of them
    assert len(chat.history(limit=100, pages=2)) == 200
