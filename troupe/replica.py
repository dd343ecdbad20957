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

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError

from troupe import approvals, auth, metrics, report, version
from troupe.chat import Chat, make_client
from troupe.claims import Claimer, ClaimLost, Lease, done_reaction, read_thread
from troupe.commands import Command, ParseError, addressed_to, describe, parse
from troupe.config import Config, Secrets
from troupe.deployment import Context, Deployment, Refused, current_locks, lock_until
from troupe.errors import InputError, SlackError, TroupeError
from troupe.locks import Lock, lock_on, lock_text
from troupe.remote import connect
from troupe.templating import render_command

log = logging.getLogger(__name__)
SWEEP_PAGES = 5  # conversations.history pages the sweeper reads (200 messages each)


@dataclass(frozen=True)
class Work:
    ts: str
    text: str  # the command part, after the mention or prefix
    user: str = ""  # who asked (Slack user ID): what authorization checks


class Replica:
    def __init__(self, config: Config, secrets: Secrets, name: str, base_dir: Path) -> None:
        if config.slack.channel is None:
            raise InputError("troupe.yaml: slack.channel is required to run a replica")
        self.config = config
        self.name = name
        self.base_dir = base_dir
        self.client = make_client(secrets.bot_token.get_secret_value(), config.slack.api_url)
        self.chat = Chat(self.client, config.slack.channel)
        # Who this replica is in Slack; a bad token or an unreachable Slack ends here,
        # as a SlackError the CLI prints (and the supervisor retries with backoff).
        self.bot_user = str(self.chat.call("auth.test")["user_id"])
        self.fleet = set(config.slack.fleet) | {self.bot_user}
        lease = Lease(**config.slack.lease.model_dump())
        self.claimer = Claimer(self.chat, name, self.fleet, lease)
        self.queue: queue.Queue[Work] = queue.Queue()
        self.stopping = threading.Event()
        self.busy_with: str | None = None
        self._current: Deployment | None = None
        self.pokes: dict[str, threading.Event] = {}  # button clicks wake a waiting deployment
        self._answerer = ThreadPoolExecutor(1, thread_name_prefix="troupe-roll-call")
        self._queued: set[str] = set()
        self._answered: set[str] = set()
        self._latest_reply: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self.alive_at = time.time()  # last pass of the sweeper loop: the health check reads it
        self.app = self._bolt_app(secrets)
        if config.auth is None:
            log.warning("no `auth` section in the config: everyone in the channel may deploy")

    # ---- receiving -----------------------------------------------------------------------

    def _bolt_app(self, secrets: Secrets) -> App:
        http = self.config.slack.delivery == "http"
        secret = secrets.signing_secret.get_secret_value() if secrets.signing_secret else None
        app = App(client=self.client, signing_secret=secret, request_verification_enabled=http)
        app.event("message")(self._on_event)
        app.event("app_mention")(self._on_event)
        # Acked and ignored: bolt does not ack events no listener matches, and Slack would
        # redeliver them. Claims and approvals read pins and reactions from the thread.
        for kind in ("pin_added", "pin_removed", "reaction_added", "reaction_removed"):
            app.event(kind)(_ignore)
        for action in (approvals.APPROVE_ACTION, approvals.ABORT_ACTION):
            app.action(action)(self._on_click)
        return app

    def _on_click(self, ack: Any, body: dict[str, Any]) -> None:
        """A button on an approval message: write it into the thread, where the waiting
        deployment (on this replica or another) judges it; wake it if it is here."""
        ack()
        action = body["actions"][0]
        message = body.get("message") or {}
        thread_ts = message.get("thread_ts") or action.get("value")
        if not thread_ts:
            return
        try:
            self.chat.post(
                approvals.click_text(body["user"]["id"], action["action_id"]), thread_ts=thread_ts
            )
        except TroupeError as exc:
            log.warning("recording a click on %s: %s", thread_ts, exc)
        if (wake := self.pokes.get(thread_ts)) is not None:
            wake.set()

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
        work = Work(message["ts"], text, str(message.get("user", "")))
        if _verb(text) in ("roll call", "census"):
            # Every replica answers these, busy or not: not from the worker, which may be
            # in the middle of a deploy.
            self._answerer.submit(self._answer_roll_call_quietly, work.ts)
        self.queue.put(work)

    def _command_part(self, text: str) -> str | None:
        for bot in sorted(self.fleet):
            part = addressed_to(text, bot, self.config.slack.prefix)
            if part is not None:
                return part
        return None

    def command_of(self, text: str) -> Command | None:
        """The command in a message, if it is one for Troupe and parses."""
        part = self._command_part(text)
        if part is None:
            return None
        try:
            return parse(part)
        except ParseError:
            return None

    # ---- the sweeper ---------------------------------------------------------------------

    def sweep(self) -> None:
        """Find commands no event brought here: unclaimed, stale, or roll calls."""
        oldest = f"{time.time() - self.config.slack.sweep_window:.6f}"
        # Five pages: a command handed over under a burst of newer ones is still found.
        for message in reversed(self.chat.history(oldest=oldest, pages=SWEEP_PAGES)):
            if done_reaction(message, self.fleet) is not None:
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
        except ParseError as exc:
            problem = str(exc)
            self._claimed_reply(work, lambda: report.refused_text(problem), ok=False)
            return
        verb = command.verb
        if verb in _RUNS:
            self._run_claimed(work, command)
        elif verb in _ANSWERS:
            self._claimed_reply(work, lambda: _ANSWERS[verb](self, command, work), ok=True)

    def _claimed_reply(self, work: Work, answer: Callable[[], str], ok: bool) -> None:
        """A quick answer, still claimed, so that one replica answers, once. A refusal
        (InputError) is an answer too, marked failed."""
        claim = self.claimer.try_claim(work.ts)
        if claim is None:
            return
        metrics.COMMANDS_CLAIMED.labels(work.text.split(" ")[0].lower()[:20]).inc()
        try:
            text = answer()
        except InputError as exc:
            text, ok = report.refused_text(str(exc)), False
        self.chat.post(text, thread_ts=work.ts)
        self.claimer.finish(claim, ok)

    def _answer_roll_call_quietly(self, ts: str) -> None:
        try:
            self._answer_roll_call(ts)
        except TroupeError as exc:
            log.warning("roll call %s: %s", ts, exc)
        except Exception:
            log.exception("roll call %s failed unexpectedly", ts)

    def _answer_roll_call(self, ts: str) -> None:
        if ts in self._answered:
            return
        mine = f"*{self.name}* here"
        if not any(mine in m.get("text", "") for m in self.chat.thread(ts)[1:]):
            text = report.roll_call_text(self.name, version.current().label, self.busy_with)
            self.chat.post(text, thread_ts=ts)
        self._answered.add(ts)  # answered once (redeliveries and sweeps find it here)

    # ---- quick answers ---------------------------------------------------------------------

    def _help(self, command: Command, work: Work) -> str:
        return report.help_text(command.topic)

    def _status(self, command: Command, work: Work) -> str:
        pinned = self.chat.pinned_messages()  # commands being worked on, and locks
        claims = []
        for ts in sorted({m["ts"] for m in pinned} - {work.ts}):
            thread = self.chat.thread(ts)
            state = read_thread(thread, self.fleet)
            owner = state.owner
            if owner is not None and state.done is None:
                claims.append((thread[0].get("text", ""), owner.replica, owner.generation))
        locks = [
            report.lock_held_text(lock.env, lock.owner, lock_until(lock), lock.reason)
            for lock in current_locks(self._context(), time.time(), pinned)
        ]
        return report.status_text(claims, locks)

    def _not_here(self, command: Command, work: Work) -> str:
        return report.not_in_thread_text(command.verb)

    def _lock_env(self, command: Command, work: Work) -> str:
        env, user = command.env or "", work.user
        self._authorize(user, "lock", env)
        now = time.time()
        held = lock_on(current_locks(self._context(), now), env, now)
        if held is not None and held.owner != user:
            raise Refused(report.lock_held_text(env, held.owner, lock_until(held), held.reason))
        until = None if command.seconds is None else now + command.seconds
        ts = self.chat.post(lock_text(env, user, until, command.reason))
        self.chat.pin(ts)
        if held is not None:  # the owner renewed it: the new one replaces the old
            self.chat.unpin(held.ts)
        lock = Lock(env, user, until, command.reason, ts)
        return report.locked_text(env, lock_until(lock), command.reason)

    def _unlock_env(self, command: Command, work: Work) -> str:
        env, user = command.env or "", work.user
        self._authorize(user, "unlock", env)
        now = time.time()
        locks = [lock for lock in current_locks(self._context(), now) if lock.env == env]
        if not locks:
            raise Refused(f"*{env}* is not locked")
        for lock in locks:
            self.chat.unpin(lock.ts)
        return report.unlocked_text(env, user)

    def _authorize(self, user: str, action: str, env: str) -> None:
        refused = auth.refusal(self.config.auth, user, action, None, env)
        if refused:
            log.warning("refused %s by %s: %s", action, user, refused)
            raise Refused(refused)

    def _history(self, command: Command, work: Work) -> str:
        entries: list[tuple[str, str, str, str, str]] = []
        for message in self.chat.history(limit=200):
            if len(entries) >= (command.count or 10):
                break
            past = self.command_of(message.get("text", ""))
            if past is None or past.verb not in _RUNS:
                continue
            thread = self.chat.thread(message["ts"])
            state = read_thread(thread, self.fleet)
            result = _done_line(thread, self.fleet)
            emoji = {True: ":white_check_mark:", False: ":x:", None: ":hourglass:"}[state.done]
            owner = state.owner.replica if state.owner else "nobody yet"
            summary = result if state.done is not None else f"running on {owner}"
            entries.append((message["ts"], message.get("user", ""), describe(past), emoji, summary))
        return report.history_text(entries)

    def _census(self, command: Command, work: Work) -> str:
        """Versions on the hosts (chatops.census_command) and on every replica (they
        answer like a roll call: give them a moment, then read the thread)."""
        hosts = self._host_versions()
        time.sleep(self.config.slack.lease.settle * 4)
        replicas = {}
        for message in self.chat.thread(work.ts)[1:]:
            answer = report.read_roll_call(message.get("text", ""))
            if answer is not None and message.get("user") in self.fleet:
                name, label, _ = answer
                replicas[name] = label
        return report.census_text(hosts, replicas)

    def _host_versions(self) -> dict[str, str] | None:
        template = self.config.chatops.census_command
        if template is None:
            return None
        hosts = self.config.inventory.select(self.config.chatops.census_hosts)

        def one(host: Any) -> str:
            try:
                command = render_command(template, {"host": host.template_view()}, "census")
                with contextlib.closing(connect(host)) as remote:
                    result = remote.run(command, timeout=30)
            except TroupeError as exc:
                return f"unknown ({exc})"
            return (
                result.stdout.strip() or "unknown"
                if result.ok
                else f"unknown (exit {result.exit_code})"
            )

        with ThreadPoolExecutor(self.config.execution.forks) as pool:
            return dict(zip((h.name for h in hosts), pool.map(one, hosts), strict=True))

    # ---- commands that touch hosts ------------------------------------------------------------

    def _context(self) -> Context:
        return Context(
            self.config,
            self.chat,
            self.claimer,
            self.name,
            self.base_dir,
            self.fleet,
            self.stopping,
            self.command_of,
            self.pokes,
        )

    def _run_claimed(self, work: Work, command: Command) -> None:
        if self.stopping.is_set():
            return
        claim = self.claimer.try_claim(work.ts)
        if claim is None:
            return
        metrics.COMMANDS_CLAIMED.labels(command.verb).inc()
        self.busy_with = work.ts
        deployment = Deployment(self._context(), claim, command, work.user)
        self._current = deployment
        try:
            deployment.run()
        except ClaimLost as exc:
            self.chat.post(report.lost_text(self.name, str(exc)), thread_ts=work.ts)
        finally:
            self._current = None
            self.busy_with = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the worker and the sweeper; returns at once."""
        threading.Thread(target=self._work_loop, name="troupe-worker", daemon=True).start()
        threading.Thread(target=self._sweep_loop, name="troupe-sweeper", daemon=True).start()
        self.sweep()  # commands posted while this replica was down

    def stop(self) -> None:
        """Stop claiming; a running deploy stops at its next safe point and is handed over."""
        self.stopping.set()
        if self._current is not None:
            self._current.stop.set()


def _ignore() -> None:
    """A listener that only lets bolt ack the event."""


def _done_line(thread: list[dict[str, Any]], fleet: set[str]) -> str:
    """The first line of the done record, without its emoji: what history shows."""
    for message in reversed(thread[1:]):
        text = str(message.get("text", ""))
        if message.get("user") in fleet and text.startswith((":white_check_mark: ", ":x: ")):
            return text.split("\n", 1)[0].split(" · ", 1)[-1]
    return ""


def _verb(text: str) -> str | None:
    try:
        return parse(text).verb
    except ParseError:
        return None


_RUNS = ("deploy", "plan", "rollback", "self-update")
_ANSWERS: dict[str, Callable[[Replica, Command, Work], str]] = {
    "help": Replica._help,
    "status": Replica._status,
    "approve": Replica._not_here,
    "abort": Replica._not_here,
    "lock": Replica._lock_env,
    "unlock": Replica._unlock_env,
    "history": Replica._history,
    "census": Replica._census,
}


def run_socket_mode(replica: Replica, app_token: str) -> SocketModeHandler:
    """Open Socket Mode; a bad app token or an unreachable Slack is a SlackError."""
    handler = SocketModeHandler(replica.app, app_token)
    try:
        handler.connect()  # type: ignore[no-untyped-call]
    except SlackApiError as exc:
        raise SlackError("apps.connections.open", str(exc.response.get("error"))) from exc
    except OSError as exc:
        raise SlackError("apps.connections.open", f"cannot connect ({exc})") from exc
    return handler
