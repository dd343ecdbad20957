"""One claimed command that touches hosts: deploy, plan, self-update, rollback.

The replica has claimed the command; from here the flow is: authorize → wait for the
environment's lock (or refuse) → plan → (plan: wait for approval) → execute → report.
While it runs, three helpers work beside the executor:

- `_Heartbeat` renews the claim's lease; if the claim is lost it stops the run.
- `_Watcher` reads the thread every `poll_interval` (or at once when a button click
  arrives) for approve / abort decisions: button clicks (recorded in the thread by
  whichever replica received them), 👍 reactions, `approve` / `abort` replies.
- `_Progress` edits the one progress message at most every `progress_interval`.

Thread replies are kept to milestones (journal per batch, pauses, approvals, failures,
rollback, done), so a rollout stays within the budget in docs/chatops.md.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from troupe import approvals, auth, metrics, report
from troupe.approvals import Decision
from troupe.chat import Chat
from troupe.claims import Claim, Claimer, ClaimLost, done_reaction, read_thread
from troupe.commands import Command, describe
from troupe.config import Config
from troupe.errors import InputError, SlackError, TroupeError
from troupe.executor import Executor, Hooks, Resume
from troupe.inventory import Host
from troupe.locks import Lock, lock_on, read_locks
from troupe.planner import Batch, Plan, make_plan
from troupe.playbooks import Playbook, load_playbook
from troupe.progress import (
    ApprovalNeeded,
    BatchDone,
    Board,
    Event,
    RunOutcome,
    RunResult,
    StepDone,
)
from troupe.remote import connect

log = logging.getLogger(__name__)
LATEST_READS = 20  # threads `rollback` reads, newest first, to find what to undo
LOCK_POLL = 5.0  # seconds between reads of the pins while queued (pins.list is Tier 2)


class Refused(InputError):
    """A request that is answered with a reason and runs nothing (auth, locks, ...)."""


class HandOff(TroupeError):
    """The replica is shutting down before the command could finish: hand it over."""


@dataclass
class Context:
    """What a command needs from the replica that runs it."""

    config: Config
    chat: Chat
    claimer: Claimer
    name: str
    base_dir: Path
    fleet: set[str]
    stopping: threading.Event
    command_of: Callable[[str], Command | None]  # a message's command, if it is one
    pokes: dict[str, threading.Event] = field(default_factory=dict)  # clicks wake watchers


def current_locks(
    ctx: Context, now: float, pinned: list[dict[str, Any]] | None = None
) -> list[Lock]:
    """Live locks among the pinned messages (read here unless given); expired ones are
    unpinned on the way (whoever notices first)."""
    if pinned is None:
        pinned = ctx.chat.pinned_messages()
    locks = read_locks(pinned, ctx.fleet)
    for lock in locks:
        if lock.expired(now):
            ctx.chat.unpin(lock.ts)
    return [lock for lock in locks if not lock.expired(now)]


def lock_until(lock: Lock) -> str:
    if lock.until is None:
        return "until unlocked"
    return "until " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(lock.until))


class Deployment:
    """Runs one claimed command; the replica concludes nothing itself."""

    def __init__(self, ctx: Context, claim: Claim, command: Command, requester: str) -> None:
        self.ctx = ctx
        self.claim = claim
        self.command = command
        self.requester = requester
        self.stop = threading.Event()  # shutdown or a lost claim: stop at a safe point
        self.lost: list[ClaimLost] = []
        self.hooks = Hooks(stop=self.stop)
        self.pace = Pacer(ctx.config.chatops.post_interval)
        self.watcher: _Watcher | None = None
        self.reported: set[str] = set()  # tasks whose output goes into the thread
        self.playbook: str | None = None  # what authorization checks decisions against
        self.env: str | None = None

    @property
    def ts(self) -> str:
        return self.claim.command_ts

    def post(self, text: str, **extra: Any) -> str:
        self.pace()
        return self.ctx.chat.post(text, thread_ts=self.ts, **extra)

    # ---- entry --------------------------------------------------------------------------

    def run(self) -> None:
        """Raises ClaimLost (the caller says so in the thread); answers everything else."""
        try:
            with (
                _Heartbeat(self.ctx.claimer, self.claim, self.stop, self.lost),
                _Watcher(self) as self.watcher,
            ):
                if self.command.verb == "rollback":
                    self._rollback()
                else:
                    self._deploy()
        except InputError as exc:  # refused, or a bad playbook or variable: nothing ran
            if self.lost:
                raise self.lost[0] from exc
            self.post(report.refused_text(str(exc)))
            self.ctx.claimer.finish(self.claim, False, "not started")
        except HandOff:
            self.ctx.claimer.hand_off(self.claim, "shutting down")

    # ---- deploy / plan / self-update -------------------------------------------------------

    def _deploy(self) -> None:
        command = self.command
        playbook, path = self._playbook(_playbook_of(command))
        env = command.target or playbook.hosts
        self.playbook, self.env = playbook.name, env
        action = "self-update" if command.verb == "self-update" else "deploy"
        self._authorize(action, playbook.name, env)
        hosts = self._order(self.ctx.config.inventory.select(env))
        plan = make_plan(playbook, hosts, self.ctx.config.execution.forks)
        self._wait_for_lock(env)
        if command.verb == "plan" and not self.claim.batches_done:
            request = ApprovalNeeded("the plan below")
            if not self._ask(request, report.plan_text(plan, playbook)):
                self._conclude_unapproved()
                return
        self._execute(playbook, path.parent, plan, hosts, env)

    def _variables(self) -> dict[str, str]:
        if self.command.verb == "self-update":
            return {"ref": self.command.ref or self.ctx.config.selfupdate.ref}
        return self.command.variables

    def _order(self, hosts: list[Host]) -> list[Host]:
        """Self-update: the first claimer's own host last, so it restarts after the others.
        The first claimer's, not this replica's: one that took over must keep the order
        the journal's batch numbers refer to (troupe.selfupdate; docs/self-update.md)."""
        if self.command.verb != "self-update":
            return hosts
        claims = self.ctx.claimer.state(self.claim.command_ts).claims
        first = min((c for c in claims if c.generation == 1), key=lambda c: c.ts, default=None)
        last = first.replica if first is not None else self.ctx.name
        return sorted(hosts, key=lambda h: h.vars.get("replica") == last)

    def _playbook(self, name: str) -> tuple[Playbook, Path]:
        path = self.ctx.base_dir / self.ctx.config.execution.playbooks_dir / f"{name}.yaml"
        if not path.is_file():
            raise Refused(f"no playbook named {name!r}")
        return load_playbook(path), path

    def _authorize(self, action: str, playbook: str | None, env: str | None) -> None:
        refused = auth.refusal(self.ctx.config.auth, self.requester, action, playbook, env)
        if refused:
            log.warning("refused %s: %s", describe(self.command), refused)
            raise Refused(refused)

    def _wait_for_lock(self, env: str) -> None:
        """Refuse, or queue until the lock is gone (as configured). The lease is renewed
        meanwhile, so the queued command survives this replica's death too."""
        settings = self.ctx.config.chatops
        deadline = time.time() + settings.queue_timeout
        announced = False
        while True:
            now = time.time()
            lock = lock_on(current_locks(self.ctx, now), env, now)
            if lock is None or not lock.blocks(self.requester, now):
                return
            held = report.lock_held_text(env, lock.owner, lock_until(lock), lock.reason)
            if settings.on_locked == "refuse":
                raise Refused(held)
            if now > deadline:
                raise Refused(f"{held}; waited longer than the queue allows")
            if not announced:
                self.post(report.queued_text(held))
                announced = True
            self._pause(LOCK_POLL)

    def _pause(self, seconds: float) -> None:
        if self.stop.wait(seconds) or self.ctx.stopping.is_set():
            if self.lost:
                raise self.lost[0]
            raise HandOff("shutting down while waiting")

    # ---- rollback -----------------------------------------------------------------------------

    def _rollback(self) -> None:
        target = self.command.deployment or self._latest_deployment()
        try:
            thread = self.ctx.chat.thread(target)
        except SlackError as exc:
            if exc.error not in ("thread_not_found", "message_not_found"):
                raise
            raise Refused(f"there is no message {target} in this channel") from exc
        original = self.ctx.command_of(thread[0].get("text", ""))
        if original is None or original.verb not in ("deploy", "plan"):
            raise Refused(f"{target} is not a deployment")
        state = read_thread(thread, self.ctx.fleet)
        if state.done is None:
            raise Refused(f"deployment {target} has not finished; `abort` it in its thread")
        if self._undone(thread):
            raise Refused(f"deployment {target} was already rolled back")
        if not state.batch_hosts:
            raise Refused(f"deployment {target} changed no host")
        playbook, path = self._playbook(original.playbook or "")
        env = original.target or playbook.hosts
        self.playbook, self.env = playbook.name, env
        self._authorize("rollback", playbook.name, env)
        forks = self.ctx.config.execution.forks
        batches = tuple(
            Batch(n, tuple(names), min(forks, len(names)))
            for n, names in sorted(state.batch_hosts.items())
        )
        names = tuple(n for b in batches for n in b.hosts)
        plan = Plan(playbook.name, "rollback", names, batches)
        hosts = [self.ctx.config.inventory.host(n) for n in names]
        resume = Resume(frozenset(state.batch_hosts), state.previous)
        self._execute(playbook, path.parent, plan, hosts, env, original.variables, resume, target)
        # Said in the deployment's own thread too: history shows it, and a second rollback
        # of the same deployment is refused.
        self.ctx.chat.post(report.reverted_note(self.ts), thread_ts=target)

    def _latest_deployment(self) -> str:
        """The newest finished deploy in the channel that changed hosts and was not
        rolled back yet (not this command). Reads at most LATEST_READS threads."""
        reads = 0
        for message in self.ctx.chat.history(limit=200):
            command = self.ctx.command_of(message.get("text", ""))
            if (
                message["ts"] == self.ts
                or command is None
                or command.verb not in ("deploy", "plan")
                or done_reaction(message, self.ctx.fleet) is None
            ):
                continue
            thread = self.ctx.chat.thread(message["ts"])
            if read_thread(thread, self.ctx.fleet).batch_hosts and not self._undone(thread):
                return str(message["ts"])
            reads += 1
            if reads >= LATEST_READS:
                break
        raise Refused("there is no finished deployment to roll back (name one: `history`)")

    def _undone(self, thread: list[dict[str, Any]]) -> bool:
        fleet = self.ctx.fleet
        return any(_rolled_back(m.get("text", "")) for m in thread[1:] if m.get("user") in fleet)

    # ---- running ------------------------------------------------------------------------------

    def _execute(
        self,
        playbook: Playbook,
        files_dir: Path,
        plan: Plan,
        hosts: list[Host],
        env: str,
        variables: dict[str, str] | None = None,
        resume: Resume | None = None,
        reverting: str | None = None,
    ) -> None:
        ctx = self.ctx
        board = Board.of(plan.hosts, len(plan.batches))
        for number in self.claim.batches_done:
            board.mark_done([h for b in plan.batches if b.number == number for h in b.hosts])
        title = report.progress_title(self.command.verb, playbook.name, ctx.name)
        self.reported = {t.title for t in playbook.tasks if t.report}
        progress = _Progress(
            ctx.chat, self.ts, title, board, ctx.config.chatops.progress_interval, self.pace
        )
        executor = Executor(
            playbook,
            plan,
            hosts,
            self._variables() if variables is None else variables,
            connect,
            self.hooks,
            files_dir=files_dir,
            forks=ctx.config.execution.forks,
            resume=resume or Resume(frozenset(self.claim.batches_done), self.claim.previous),
        )
        self.hooks.guard = self._guard
        self.hooks.approve = self._ask
        self.hooks.on_event = lambda event: self._on_event(event, executor, board, progress)
        progress.start(report.plan_text(plan, playbook) if reverting is None else None)
        with progress:
            if reverting is None:
                result = executor.run()
            else:
                result = executor.revert(f"rollback of deployment {reverting}")
        self._conclude(result, progress)

    def _guard(self) -> None:
        if self.ctx.stopping.is_set():
            self.stop.set()
        try:
            self.ctx.claimer.guard(self.claim)
        except ClaimLost as exc:
            self.lost.append(exc)
            raise

    def _on_event(
        self, event: Event, executor: Executor, board: Board, progress: _Progress
    ) -> None:
        board.apply(event)
        progress.changed()
        if isinstance(event, BatchDone):
            hosts = list(event.ok + event.failed)
            previous = {
                h: executor.outcomes[h].previous for h in hosts if executor.outcomes[h].previous
            }
            self.pace()
            self.ctx.claimer.journal(self.claim, event.number, hosts, previous)
        elif isinstance(event, StepDone) and event.step in self.reported:
            if event.status == "ok":
                line = event.detail.splitlines()[-1] if event.detail else ""
                self.post(report.step_output_text(event.host, line))
        elif (text := report.milestone_text(event)) is not None:
            self.post(text)

    def _conclude(self, result: RunResult, progress: _Progress) -> None:
        if self.lost:
            raise self.lost[0]
        if result.outcome == RunOutcome.INTERRUPTED and self.ctx.stopping.is_set():
            progress.finish("handed over")
            raise HandOff("shutting down")
        metrics.DEPLOY_SECONDS.labels(result.outcome.value).observe(result.duration)
        progress.finish(result.outcome.value)
        ok = result.outcome in (RunOutcome.SUCCEEDED, RunOutcome.REVERTED)
        summary = f"{report.done_summary(result)}\n```\n{report.result_text(result)}\n```"
        if self.command.verb == "self-update" and result.outcome == RunOutcome.SUCCEEDED:
            self.post(report.self_update_census(self._reported()))
        self.pace()
        self.ctx.claimer.finish(self.claim, ok, summary)

    def _reported(self) -> dict[str, str]:
        """Every host's last reported output in the thread, whichever owner posted it."""
        outputs: dict[str, str] = {}
        for message in self.ctx.chat.thread(self.ts)[1:]:
            found = report.read_step_output(message.get("text", ""))
            if found is not None and message.get("user") in self.ctx.fleet:
                outputs[found[0]] = found[1]
        return outputs

    def _conclude_unapproved(self) -> None:
        if self.lost:
            raise self.lost[0]
        if self.ctx.stopping.is_set():
            raise HandOff("shutting down")
        self.ctx.claimer.finish(self.claim, False, "not approved; nothing ran")

    # ---- approvals -------------------------------------------------------------------------

    def _ask(self, request: ApprovalNeeded, detail: str | None = None) -> bool:
        """Post the approval message with its buttons and wait for a decision (or the
        timeout, which aborts: the caller rolls back what was touched)."""
        timeout = self.ctx.config.chatops.approval_timeout
        text = report.approval_text(request.reason, request.roles, timeout)
        if detail:
            text += f"\n```\n{detail}\n```"
        pending = _Pending(request, self.post(text, blocks=report.approval_blocks(text, self.ts)))
        watcher = self.watcher
        assert watcher is not None  # run() starts it before anything can ask
        watcher.pending = pending
        watcher.poke()
        deadline = time.monotonic() + timeout
        while not pending.decided.wait(0.2):
            if self.stop.is_set() or self.ctx.stopping.is_set() or time.monotonic() > deadline:
                break
        watcher.pending = None
        verdict = report.approval_verdict(
            str(pending.decision) if pending.decision else None, timeout
        )
        with contextlib.suppress(TroupeError):  # the buttons go; the decision is in the thread
            closed = report.approval_closed_text(request.reason, verdict)
            self.ctx.chat.update(pending.ts, closed, blocks=[])
        return pending.decision is not None and pending.decision.verb == "approve"


SELF_UPDATE = "self-update"  # the playbook `@troupe self-update [ref]` runs


def _playbook_of(command: Command) -> str:
    return SELF_UPDATE if command.verb == "self-update" else command.playbook or ""


def _rolled_back(text: str) -> bool:
    """A record that the deployment was undone: by a `rollback`, or by itself on failure."""
    first_line = text.split("\n", maxsplit=1)[0]
    return first_line.startswith(report.REVERTED_NOTE) or "and rolled back in" in first_line


@dataclass
class _Pending:
    request: ApprovalNeeded
    ts: str  # the approval message
    decided: threading.Event = field(default_factory=threading.Event)
    decision: Decision | None = None


class _Background:
    """A helper thread for the length of a `with` block: `_loop` runs until `done`."""

    name = "troupe-helper"
    join_timeout = 5.0

    def __init__(self) -> None:
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    def _loop(self) -> None:
        raise NotImplementedError

    def _wake(self) -> None:
        """Called once `done` is set, so that a loop waiting on its own event sees it."""

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self._wake()
        self.thread.join(timeout=self.join_timeout)


class _Watcher(_Background):
    """Reads the deployment's thread for decisions while it runs (see module doc)."""

    name = "troupe-watcher"
    # Not long: a read stuck in Slack's retries must not delay the conclusion; the
    # thread sees `done` when it returns, and posts nothing after that.
    join_timeout = 1.0

    def __init__(self, deployment: Deployment) -> None:
        self.d = deployment
        self.pending: _Pending | None = None
        self.judged: set[str] = set()
        self.wake = deployment.ctx.pokes.setdefault(deployment.ts, threading.Event())
        super().__init__()

    def poke(self) -> None:
        self.wake.set()

    _wake = poke

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.d.ctx.pokes.pop(self.d.ts, None)

    def _loop(self) -> None:
        interval = self.d.ctx.config.chatops.poll_interval
        while not self.done.is_set():
            self.wake.wait(interval)
            self.wake.clear()
            if self.done.is_set():
                return
            try:
                self._read()
            except TroupeError as exc:
                log.warning("reading %s for decisions: %s", self.d.ts, exc)

    def _read(self) -> None:
        ctx = self.d.ctx
        pending = self.pending
        thread = ctx.chat.thread(self.d.ts)
        found = approvals.decisions(
            thread,
            self.d.ts,
            ctx.fleet,
            lambda text: c.verb if (c := ctx.command_of(text)) else None,
            reactions_on=pending.ts if pending else None,
        )
        for decision in found:
            if decision.key not in self.judged:
                self.judged.add(decision.key)
                self._judge(decision, self.pending)

    def _judge(self, decision: Decision, pending: _Pending | None) -> None:
        d = self.d
        if self.done.is_set():
            return  # the deployment concluded while this read was in flight
        config = d.ctx.config
        if decision.verb == "abort":
            refused = (
                None
                if decision.user == d.requester
                else auth.refusal(config.auth, decision.user, "abort", d.playbook, d.env)
            )
        elif pending is None:
            refused = "nothing is waiting for approval right now"
        else:
            refused = auth.approval_refusal(
                config.auth,
                decision.user,
                d.requester,
                pending.request.roles,
                d.playbook or "",
                d.env,
            )
        if refused:
            log.warning("refused %s: %s", decision, refused)
            d.post(report.refused_text(refused))
            return
        if pending is not None:
            pending.decision = decision
            pending.decided.set()
        if decision.verb == "abort":
            d.hooks.aborted_by = f"aborted by <@{decision.user}>"
            d.hooks.abort.set()


class _Progress(_Background):
    """The progress message: posted once, then edited at most every `interval`."""

    name = "troupe-progress"

    def __init__(
        self,
        chat: Chat,
        thread_ts: str,
        title: str,
        board: Board,
        interval: float,
        pace: Callable[[], None],
    ) -> None:
        self.chat, self.thread_ts, self.title, self.pace = chat, thread_ts, title, pace
        self.board, self.interval = board, interval
        self.ts: str | None = None
        self.tail = ""
        self.dirty = threading.Event()
        super().__init__()

    def start(self, plan: str | None) -> None:
        self.tail = f"\n*Plan*\n```\n{plan}\n```" if plan else ""
        self.pace()
        self.ts = self.chat.post(self._text(), thread_ts=self.thread_ts)

    def _text(self, finished: str | None = None) -> str:
        return report.progress_text(self.title, self.board, finished) + self.tail

    def changed(self) -> None:
        self.dirty.set()

    _wake = changed

    def _loop(self) -> None:
        while not self.done.is_set():
            self.dirty.wait()
            if self.done.is_set():
                return
            self.dirty.clear()
            self._edit(None)
            self.done.wait(self.interval)  # at most one edit per interval

    def _edit(self, finished: str | None) -> None:
        if self.ts is None:
            return
        with contextlib.suppress(TroupeError):  # progress is best effort; the journal is not
            self.chat.update(self.ts, self._text(finished))

    def finish(self, outcome: str) -> None:
        self._edit(outcome)


class Pacer:
    """Spaces a deployment's thread posts by `interval` (Slack asks for about one message
    per second per channel). Milestones are rare, so this costs a real rollout nothing;
    it keeps a run of fast batches from bursting."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = time.monotonic()  # the claim record was just posted
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            delay = self.last + self.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.last = time.monotonic()


class _Heartbeat(_Background):
    """Renews the lease while a command runs; on ClaimLost, stops the run."""

    name = "troupe-heartbeat"

    def __init__(
        self, claimer: Claimer, claim: Claim, stop: threading.Event, lost: list[ClaimLost]
    ) -> None:
        self.claimer, self.claim, self.stop, self.lost = claimer, claim, stop, lost
        super().__init__()

    def _loop(self) -> None:
        while not self.done.wait(self.claimer.lease.heartbeat):
            try:
                self.claimer.heartbeat(self.claim)
            except ClaimLost as exc:
                self.lost.append(exc)
                self.stop.set()
                return
            except TroupeError as exc:
                log.warning("heartbeat failed (will retry): %s", exc)
