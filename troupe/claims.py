"""The SlackMQ claim protocol, made safe (see docs/claims.md for the why).

A command message is claimed by pinning it (`pins.add` is a test-and-set) and
posting a claim record in its thread: replica, generation, lease expiry. The
owner renews the lease by editing its record (heartbeat). Exactly one owner per
generation is decided by the thread itself — the claim record with the lowest
`ts` wins — so the protocol stays correct if `pins.add` is not atomic, and a
takeover (generation + 1, after the lease expired) is decided the same way.
An owner that was asleep past its lease re-reads the thread before touching
another host (fencing) and stops if a newer generation exists. Completion is
permanent and visible: a done record and a ✅/❌ reaction, written before the
pin is released.

The record texts live here, next to their parser, because the two must agree.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from troupe import metrics
from troupe.chat import Chat
from troupe.errors import TroupeError

DONE_REACTIONS = {"white_check_mark": True, "x": False}


@dataclass(frozen=True)
class Lease:
    seconds: float = 30.0  # an owner silent this long may be replaced
    heartbeat: float = 10.0  # how often the owner renews
    settle: float = 0.5  # wait before reading who won (Slack is not read-your-writes)
    orphan_grace: float = 30.0  # a pin with no claim record this old is taken over


class ClaimLost(TroupeError):
    """This replica no longer owns the command: it must not touch another host."""

    def __init__(self, command_ts: str, replica: str, why: str) -> None:
        self.command_ts = command_ts
        super().__init__(f"{replica} lost the claim on {command_ts}: {why}")


# ---- records (pure) ------------------------------------------------------------------------

CLAIM_RECORD = re.compile(
    r"^:lock: claimed by \*(?P<replica>[^*]+)\* · generation (?P<gen>\d+) · "
    r"lease until (?P<until>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z)"
)
_JOURNAL = re.compile(r"^:notebook: batch (?P<batch>\d+) done · generation (?P<gen>\d+)")
_PREVIOUS = re.compile(r"· previous `(?P<json>\{.*\})`", re.S)
_DONE = re.compile(r"^:(?P<emoji>white_check_mark|x): (?:done|failed)\b")


def claim_text(replica: str, generation: int, until: float) -> str:
    stamp = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f":lock: claimed by *{replica}* · generation {generation} · lease until {stamp}"


def journal_text(
    batch: int, generation: int, hosts: list[str], previous: dict[str, dict[str, str]] | None = None
) -> str:
    """A finished batch; `previous` (what each host had before) lets a replica that takes
    over roll these hosts back too."""
    text = f":notebook: batch {batch} done · generation {generation} · {', '.join(hosts)}"
    if previous:
        text += f" · previous `{json.dumps(previous, sort_keys=True, separators=(',', ':'))}`"
    return text


def done_text(ok: bool, summary: str) -> str:
    return (":white_check_mark: done" if ok else ":x: failed") + (
        f" · {summary}" if summary else ""
    )


@dataclass(frozen=True)
class ClaimRecord:
    replica: str
    generation: int
    until: float
    ts: str


@dataclass
class ThreadState:
    """What the thread of one command says, read by anyone."""

    command_ts: str
    done: bool | None = None  # None: not done; True/False: succeeded/failed
    claims: list[ClaimRecord] = field(default_factory=list)
    batches_done: set[int] = field(default_factory=set)
    previous: dict[str, dict[str, str]] = field(default_factory=dict)  # from the journal
    batch_hosts: dict[int, list[str]] = field(default_factory=dict)  # from the journal
    pinned: bool = False
    posted_at: float = 0.0  # the command's own ts, as a time

    @property
    def generation(self) -> int:
        return max((c.generation for c in self.claims), default=0)

    @property
    def owner(self) -> ClaimRecord | None:
        """The winner of the newest generation: its record with the lowest ts."""
        newest = [c for c in self.claims if c.generation == self.generation]
        return min(newest, key=lambda c: c.ts) if newest else None

    def claimable(self, now: float, lease: Lease, pinned_since: float | None = None) -> bool:
        """Open for a claim: not done, and no live owner (none yet, or its lease ran out).
        A pin without a record is an orphan once `orphan_grace` has passed since
        `pinned_since` (when the caller first saw it pinned; default: the command's ts)."""
        if self.done is not None:
            return False
        owner = self.owner
        if owner is None:
            since = self.posted_at if pinned_since is None else pinned_since
            return not self.pinned or now - since > lease.orphan_grace
        return owner.until < now


def done_reaction(message: dict[str, Any], fleet: set[str]) -> bool | None:
    """A command's ✅ (True) or ❌ (False) by a fleet bot; None while it is not done.
    Readable from the channel's history alone, without the thread."""
    done = None
    for reaction in message.get("reactions", []):
        if reaction["name"] in DONE_REACTIONS and fleet & set(reaction.get("users", [])):
            done = DONE_REACTIONS[reaction["name"]]
    return done


def read_thread(messages: list[dict[str, Any]], fleet: set[str]) -> ThreadState:
    """Parse a command's thread (parent first). Only records by fleet bots count."""
    parent = messages[0]
    state = ThreadState(parent["ts"], pinned=bool(parent.get("pinned_to")))
    state.posted_at = float(parent["ts"])
    state.done = done_reaction(parent, fleet)
    for message in messages[1:]:
        if message.get("user") in fleet:
            _read_record(state, message)
    return state


def _read_record(state: ThreadState, message: dict[str, Any]) -> None:
    text = message.get("text", "")
    if match := CLAIM_RECORD.match(text):
        until = datetime.fromisoformat(match["until"])  # with or without fractions
        state.claims.append(
            ClaimRecord(match["replica"], int(match["gen"]), until.timestamp(), message["ts"])
        )
    elif match := _JOURNAL.match(text):
        batch = int(match["batch"])
        state.batches_done.add(batch)
        hosts = text.split(" · ")[2] if text.count(" · ") >= 2 else ""
        state.batch_hosts[batch] = [
            h for h in hosts.split(", ") if h and not h.startswith("previous")
        ]
        if previous := _PREVIOUS.search(text):
            with contextlib.suppress(ValueError):
                state.previous |= json.loads(previous["json"])
    elif match := _DONE.match(text):
        state.done = match["emoji"] == "white_check_mark"


# ---- the protocol (edge: talks to Slack through Chat) ----------------------------------------


@dataclass
class Claim:
    """A command this replica owns, for one generation."""

    command_ts: str
    generation: int
    record_ts: str
    confirmed_at: float  # when we last knew, from the thread, that we still own it
    lease_until: float  # the lease our record shows; past it, we may already be replaced
    batches_done: set[int] = field(default_factory=set)  # from the journal, for resume
    previous: dict[str, dict[str, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class Claimer:
    def __init__(
        self,
        chat: Chat,
        replica: str,
        fleet: set[str],
        lease: Lease | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.chat = chat
        self.replica = replica
        self.fleet = fleet
        self.lease = lease or Lease()
        self.clock = clock
        self.sleep = sleep
        # Commands someone else owns, and until when their lease runs: the sweeper need
        # not read those threads again before then (conversations.replies is rate-limited).
        self.busy_until: dict[str, float] = {}
        # When this replica first saw a command pinned without a claim record: its pinner
        # gets `orphan_grace` from then to write one.
        self._pinned_seen: dict[str, float] = {}

    def state(self, command_ts: str) -> ThreadState:
        return read_thread(self.chat.thread(command_ts), self.fleet)

    def try_claim(self, command_ts: str) -> Claim | None:
        """Claim the command if it is open; None if it is done or someone else has it."""
        state = self.state(command_ts)
        now = self.clock()
        if not state.claimable(now, self.lease, self._orphan_since(state, now)):
            self._remember(state)
            return None
        if state.owner is None and not state.pinned and not self.chat.pin(command_ts):
            # Lost the pin race: the winner posts its record next. The sweeper need not
            # look again until that record (a new reply) or orphan_grace says otherwise.
            self.busy_until[command_ts] = now + self.lease.orphan_grace
            metrics.CLAIMS_LOST.inc()
            return None
        generation = state.generation + 1
        until = self.clock() + self.lease.seconds
        record = self.chat.post(claim_text(self.replica, generation, until), thread_ts=command_ts)
        self.sleep(self.lease.settle)
        after = self.state(command_ts)
        owner = after.owner
        if after.done is not None or not self._is_mine(owner, generation):
            self.chat.update(record, f":zzz: {self.replica} yields generation {generation}")
            metrics.CLAIMS_LOST.inc()  # both pinned (or both took over): the tie-break lost
            return None
        assert owner is not None
        if generation > 1:
            metrics.TAKEOVERS.inc()
        return Claim(
            command_ts,
            generation,
            owner.ts,  # ours, even if a retried post left two copies
            self.clock(),
            until,
            set(after.batches_done),
            after.previous,
        )

    def _is_mine(self, owner: ClaimRecord | None, generation: int) -> bool:
        """Records are matched by replica name and generation, not by ts: a post that was
        retried after a lost answer may have left two copies, and either one is ours."""
        return (
            owner is not None and owner.replica == self.replica and owner.generation == generation
        )

    def _orphan_since(self, state: ThreadState, now: float) -> float:
        if not state.pinned or state.owner is not None:
            self._pinned_seen.pop(state.command_ts, None)
            return now
        return self._pinned_seen.setdefault(state.command_ts, now)

    def _remember(self, state: ThreadState) -> None:
        if state.done is not None:
            self.busy_until.pop(state.command_ts, None)
        elif state.owner is not None:
            self.busy_until[state.command_ts] = state.owner.until
        else:  # pinned, no record yet: its pinner has orphan_grace to write one
            since = self._pinned_seen.get(state.command_ts, self.clock())
            self.busy_until[state.command_ts] = since + self.lease.orphan_grace

    def heartbeat(self, claim: Claim) -> None:
        """Renew the lease. Raises ClaimLost if a newer generation exists, or if our lease
        ran out before the renewal was sent or answered: from then on another replica may
        have taken over without our seeing its record yet, so we must stop."""
        with claim.lock:
            self._check_lease(claim)
            self._confirm(claim)
            sent = self.clock()
            self._check_lease(claim)
            self.chat.update(
                claim.record_ts,
                claim_text(self.replica, claim.generation, sent + self.lease.seconds),
            )
            self._check_lease(claim)  # the update itself may have landed too late
            claim.lease_until = sent + self.lease.seconds
            claim.confirmed_at = sent

    def _check_lease(self, claim: Claim) -> None:
        if self.clock() >= claim.lease_until:
            raise ClaimLost(claim.command_ts, self.replica, "lease expired before it was renewed")

    def _confirm(self, claim: Claim) -> None:
        state = self.state(claim.command_ts)
        owner = state.owner
        if state.done is not None:
            raise ClaimLost(claim.command_ts, self.replica, "the command was finished")
        if not self._is_mine(owner, claim.generation):
            by = owner.replica if owner else "nobody (the claim record is gone)"
            raise ClaimLost(claim.command_ts, self.replica, f"taken over by {by}")

    def guard(self, claim: Claim) -> None:
        """Fencing, before touching a host or starting a step: free while the lease has
        more than a heartbeat left; nearer its end, renew first (reading the thread);
        past it, stop."""
        self._check_lease(claim)
        # Measured from the lease our record shows, not from when we last looked: a claim
        # post or a renewal that was slow must not eat into the margin.
        if claim.lease_until - self.clock() < self.lease.heartbeat:
            self.heartbeat(claim)

    def journal(
        self,
        claim: Claim,
        batch: int,
        hosts: list[str],
        previous: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.guard(claim)
        text = journal_text(batch, claim.generation, hosts, previous)
        self.chat.post(text, thread_ts=claim.command_ts)
        claim.batches_done.add(batch)

    def finish(self, claim: Claim, ok: bool, summary: str = "") -> None:
        """Mark done for good (record, reaction), then release the pin."""
        self.guard(claim)
        self.chat.post(done_text(ok, summary), thread_ts=claim.command_ts)
        self.chat.react(claim.command_ts, "white_check_mark" if ok else "x")
        self.chat.unpin(claim.command_ts)

    def hand_off(self, claim: Claim, reason: str) -> None:
        """Give the claim up without finishing (shutdown): the lease ends now, so another
        replica takes over at once; the pin stays, because the command is not done."""
        with claim.lock:
            now = self.clock()
            self.chat.update(claim.record_ts, claim_text(self.replica, claim.generation, now))
            claim.lease_until = now  # from here on, guard() and heartbeat() refuse
        self.chat.post(f":wave: {self.replica} hands over: {reason}", thread_ts=claim.command_ts)
