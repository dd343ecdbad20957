"""One replica's life: receive commands (bolt), claim them, run them, report, release.

Flow, one way: chat event -> command -> claim -> plan -> execute -> report.

- Events arrive over Socket Mode (default) or HTTP (signature verified by bolt).
  Every replica of a one-app-per-replica fleet sees every command; in a shared-app
  fleet Slack hands each event to one replica, and the sweeper lets the others find
  commands nobody claimed, stale claims, and roll calls.
- One worker thread runs one command at a time, so a busy replica does not claim
  what it could not start; the others take it.
- While a deploy runs, a heartbeat thread renews the lease; the executor's guard is
  the claim's fencing check; each finished batch is journaled in the thread.
- SIGTERM: stop claiming, let the current step finish, hand the claim over.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler

from troupe import __version__, report
from troupe.chat import Chat, make_client
from troupe.claims import Claim, Claimer, ClaimLost, Lease
from troupe.commands import Command, addressed_to, parse
from troupe.config import Config, Secrets
from troupe.errors import InputError, TroupeError
from troupe.executor import Executor, Hooks, Resume
from troupe.planner import make_plan
from troupe.playbooks import load_playbook
from troupe.progress import BatchDone, Event, RollbackStarted, RunOutcome
from troupe.remote import connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Work:
    ts: str
    text: str  # the command part, after the mention or prefix


class Replica:
    def __init__(self, config: Config, secrets: Secrets, name: str, base_dir: Path) -> None:
        if config.slack.channel is None:
            raise InputError("troupe.yaml: slack.channel is required to run a replica")
        self.config = config
        self.name = name
        self.base_dir = base_dir
        self.client = make_client(secrets.bot_token.get_secret_value(), config.slack.api_url)
        self.bot_user = str(self.client.auth_test()["user_id"])
        self.fleet = set(config.slack.fleet) | {self.bot_user}
        self.chat = Chat(self.client, config.slack.channel)
        lease = Lease(**config.slack.lease.model_dump())
        self.claimer = Claimer(self.chat, name, self.fleet, lease)
        self.queue: queue.Queue[Work] = queue.Queue()
        self.stopping = threading.Event()
        self.busy_with: str | None = None
        self._run_stop: threading.Event | None = None
        self._queued: set[str] = set()
        self._answered: set[str] = set()
        self._latest_reply: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self.alive_at = time.time()  # last pass of the sweeper loop: the health check reads it
        self.app = self._bolt_app(secrets)

    # ---- receiving -----------------------------------------------------------------------

    def _bolt_app(self, secrets: Secrets) -> App:
        http = self.config.slack.delivery == "http"
        secret = secrets.signing_secret.get_secret_value() if secrets.signing_secret else None
        app = App(client=self.client, signing_secret=secret, request_verification_enabled=http)
        app.event("message")(self._on_event)
        app.event("app_mention")(self._on_event)
        # Acked and ignored: bolt does not ack events no listener matches, and Slack would
        # redeliver them. The claim protocol reads pins and reactions from the thread instead.
        for kind in ("pin_added", "pin_removed", "reaction_added", "reaction_removed"):
            app.event(kind)(_ignore)
        return app

    def _on_event(self, event: dict[str, Any]) -> None:
        """Bolt acks before this runs; it only queues, the worker does the rest."""
        if event.get("channel") == self.config.slack.channel:
            self.offer(event)

    def offer(self, message: dict[str, Any]) -> None:
        """Queue a top-level message if it is a command for the fleet (once per ts)."""
        if message.get("subtype") or message.get("thread_ts", message["ts"]) != message["ts"]:
            return
        text = self._command_part(message.get("text", ""))
        if text is None:
            return
        with self._lock:
            if message["ts"] in self._queued:
                return
            self._queued.add(message["ts"])
        self.queue.put(Work(message["ts"], text))

    def _command_part(self, text: str) -> str | None:
        for bot in sorted(self.fleet):
            part = addressed_to(text, bot, self.config.slack.prefix)
            if part is not None:
                return part
        return None

    # ---- the sweeper ---------------------------------------------------------------------

    def sweep(self) -> None:
        """Find commands no event brought here: unclaimed, stale, or roll calls."""
        oldest = f"{time.time() - self.config.slack.sweep_window:.6f}"
        for message in reversed(self.chat.history(oldest=oldest)):
            if _done(message, self.fleet):
                if message.get("pinned_to"):
                    self.chat.unpin(message["ts"])  # its owner died between ✅ and the unpin
                continue
            if message["ts"] == self.busy_with or self._known_busy(message):
                continue
            self.offer(message)  # a no-op while it waits in the queue

    def _known_busy(self, message: dict[str, Any]) -> bool:
        """Owned by a live lease we read earlier, and nothing new in its thread since (a
        hand-over or a takeover posts there, and then the cache is stale)."""
        ts, latest = message["ts"], message.get("latest_reply")
        if self._latest_reply.get(ts) != latest:
            self._latest_reply[ts] = latest
            self.claimer.busy_until.pop(ts, None)
        return time.time() < self.claimer.busy_until.get(ts, 0)

    def _forget(self, ts: str) -> None:
        """Handled: the sweeper may offer it again (its claim may go stale later)."""
        with self._lock:
            self._queued.discard(ts)

    def _sweep_loop(self) -> None:
        while not self.stopping.wait(self.config.slack.sweep_interval):
            self.alive_at = time.time()
            try:
                self.sweep()
            except TroupeError as exc:
                log.warning("sweep failed: %s", exc)

    # ---- working -------------------------------------------------------------------------

    def _work_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                work = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.handle(work)
            except TroupeError as exc:
                log.warning("command %s: %s", work.ts, exc)
            except Exception:
                log.exception("command %s failed unexpectedly", work.ts)
            finally:
                self._forget(work.ts)

    def handle(self, work: Work) -> None:
        try:
            command = parse(work.text)
        except InputError as exc:
            self._claimed_reply(work.ts, report.refused_text(str(exc)), ok=False)
            return
        if command.verb == "roll call":
            self._answer_roll_call(work.ts)
        elif command.verb == "help":
            self._claimed_reply(work.ts, report.help_text(command.topic), ok=True)
        elif command.verb == "status":
            self._claimed_reply(work.ts, report.status_text(self._open_claims()), ok=True)
        else:
            self._deploy(work.ts, command)

    def _claimed_reply(self, ts: str, text: str, ok: bool) -> None:
        """A quick answer, still claimed, so that one replica answers, once."""
        claim = self.claimer.try_claim(ts)
        if claim is not None:
            self.chat.post(text, thread_ts=ts)
            self.claimer.finish(claim, ok)

    def _answer_roll_call(self, ts: str) -> None:
        if ts in self._answered:
            return
        mine = f"*{self.name}* here"
        if not any(mine in m.get("text", "") for m in self.chat.thread(ts)[1:]):
            text = report.roll_call_text(self.name, __version__, self.busy_with)
            self.chat.post(text, thread_ts=ts)
        self._answered.add(ts)  # answered once (redeliveries and sweeps find it here)

    def _open_claims(self) -> list[tuple[str, str, int]]:
        claims = []
        for ts in sorted(self.chat.pinned()):
            state = self.claimer.state(ts)
            owner = state.owner
            if owner is not None and state.done is None:
                text = self.chat.thread(ts)[0].get("text", "")
                claims.append((text, owner.replica, owner.generation))
        return claims

    # ---- deploying ---------------------------------------------------------------------------

    def _deploy(self, ts: str, command: Command) -> None:
        if self.stopping.is_set():
            return
        claim = self.claimer.try_claim(ts)
        if claim is None:
            return
        self.busy_with = ts
        try:
            self._run(claim, command)
        except ClaimLost as exc:
            self.chat.post(report.lost_text(self.name, str(exc)), thread_ts=ts)
        except InputError as exc:
            self.chat.post(report.refused_text(str(exc)), thread_ts=ts)
            self.claimer.finish(claim, False, "not started")
        finally:
            self.busy_with = None

    def _run(self, claim: Claim, command: Command) -> None:
        config = self.config
        path = self.base_dir / config.execution.playbooks_dir / f"{command.playbook}.yaml"
        if not path.is_file():
            raise InputError(f"no playbook named {command.playbook!r}")
        playbook = load_playbook(path)
        hosts = config.inventory.select(command.target or playbook.hosts)
        plan = make_plan(playbook, hosts, config.execution.forks)
        stop = threading.Event()
        lost: list[ClaimLost] = []
        executor = Executor(
            playbook,
            plan,
            hosts,
            command.variables,
            connect,
            Hooks(on_event=lambda e: None, guard=lambda: self._guard(claim, lost), stop=stop),
            files_dir=path.parent,
            forks=config.execution.forks,
            resume=Resume(frozenset(claim.batches_done), claim.previous),
        )
        executor.hooks.on_event = lambda e: self._on_run_event(claim, executor, e)
        if not claim.batches_done:
            self.chat.post(
                report.started_text(self.name, report.plan_text(plan, playbook)),
                thread_ts=claim.command_ts,
            )
        self._run_stop = stop
        with _Heartbeat(self.claimer, claim, stop, lost):
            result = executor.run()
        self._run_stop = None
        self._conclude(claim, result.outcome, report.result_text(result), lost)

    def _guard(self, claim: Claim, lost: list[ClaimLost]) -> None:
        try:
            self.claimer.guard(claim)
        except ClaimLost as exc:
            lost.append(exc)
            raise

    def _on_run_event(self, claim: Claim, executor: Executor, event: Event) -> None:
        if isinstance(event, BatchDone):
            hosts = event.ok + event.failed
            previous = {
                h: executor.outcomes[h].previous for h in hosts if executor.outcomes[h].previous
            }
            self.claimer.journal(claim, event.number, list(event.ok + event.failed), previous)
        elif isinstance(event, RollbackStarted):
            self.chat.post(report.event_line(event) or "", thread_ts=claim.command_ts)

    def _conclude(
        self, claim: Claim, outcome: RunOutcome, summary: str, lost: list[ClaimLost]
    ) -> None:
        if lost:
            raise lost[0]
        if outcome == RunOutcome.INTERRUPTED and self.stopping.is_set():
            self.claimer.hand_off(claim, "shutting down")
            return
        self.chat.post(f"```\n{summary}\n```", thread_ts=claim.command_ts)
        self.claimer.finish(claim, outcome == RunOutcome.SUCCEEDED, outcome.value)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the worker and the sweeper; returns at once."""
        threading.Thread(target=self._work_loop, name="troupe-worker", daemon=True).start()
        threading.Thread(target=self._sweep_loop, name="troupe-sweeper", daemon=True).start()
        self.sweep()  # commands posted while this replica was down

    def stop(self) -> None:
        """Stop claiming; a running deploy stops at its next safe point and is handed over."""
        self.stopping.set()
        if self._run_stop is not None:
            self._run_stop.set()


class _Heartbeat:
    """Renews the lease while a deploy runs; on ClaimLost, stops the run."""

    def __init__(
        self, claimer: Claimer, claim: Claim, stop: threading.Event, lost: list[ClaimLost]
    ) -> None:
        self.claimer, self.claim, self.stop, self.lost = claimer, claim, stop, lost
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="troupe-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._done.wait(self.claimer.lease.heartbeat):
            try:
                self.claimer.heartbeat(self.claim)
            except ClaimLost as exc:
                self.lost.append(exc)
                self.stop.set()
                return
            except TroupeError as exc:
                log.warning("heartbeat failed (will retry): %s", exc)


def _ignore() -> None:
    """A listener that only lets bolt ack the event."""


def _done(message: dict[str, Any], fleet: set[str]) -> bool:
    return any(
        r["name"] in ("white_check_mark", "x") and fleet & set(r.get("users", []))
        for r in message.get("reactions", [])
    )


def run_socket_mode(replica: Replica, app_token: str) -> SocketModeHandler:
    handler = SocketModeHandler(replica.app, app_token)
    handler.connect()  # type: ignore[no-untyped-call]
    return handler
