"""Runs a Plan over Remotes: batches in order, bounded parallelism, checks, rollback.

Each host: capture what rollback will need (`capture:`), run the tasks, run the
`verify` checks. A failed host is a value (HostOutcome), not an exception. When
the failure policy says stop, every host that was touched is rolled back, newest
batch first, with the playbook's `rollback` tasks. Events go to `on_event` as
they happen; `guard` is called before touching each host (the claim's fencing
check, later); `stop` ends the run at the next safe point (between steps).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from troupe.checks import Probe, run_check
from troupe.errors import CommandTimeout, RemoteError, TroupeError
from troupe.inventory import Host
from troupe.planner import Approve, Batch, Gate, Pause, Phase, Plan
from troupe.playbooks import Playbook, Task
from troupe.progress import (
    ApprovalNeeded,
    BatchDone,
    BatchStarted,
    CheckDone,
    Event,
    GateDone,
    HostDone,
    HostOutcome,
    HostRolledBack,
    HostState,
    Paused,
    RollbackStarted,
    RunFinished,
    RunOutcome,
    RunResult,
    StepDone,
)
from troupe.remote import Connector, Remote
from troupe.templating import TemplateProblem, evaluate, render_command, render_text


@dataclass(frozen=True)
class Resume:
    """What an earlier owner finished (from the thread's journal): those batches are not
    run again, and their hosts are rolled back with what was captured then."""

    batches_done: frozenset[int] = frozenset()
    previous: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Hooks:
    """How the executor talks to whoever drives it (terminal now, Slack later)."""

    on_event: Callable[[Event], None] = lambda event: None
    approve: Callable[[ApprovalNeeded], bool] = lambda request: False
    guard: Callable[[], None] = lambda: None
    stop: threading.Event = field(default_factory=threading.Event)
    # Set (with a reason in `aborted_by`) to stop at the next safe point and roll back.
    abort: threading.Event = field(default_factory=threading.Event)
    aborted_by: str = ""


class _Stop(Exception):
    """Internal: the run ends here with this outcome (rollback decided by the caller)."""

    def __init__(self, outcome: RunOutcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class Executor:
    def __init__(
        self,
        playbook: Playbook,
        plan: Plan,
        hosts: list[Host],
        given: dict[str, Any],
        connect: Connector,
        hooks: Hooks | None = None,
        *,
        files_dir: Path = Path(),
        forks: int = 10,
        check_mode: bool = False,
        resume: Resume | None = None,
    ) -> None:
        self.playbook = playbook
        self.plan = plan
        self.hosts = {h.name: h for h in hosts}
        # Resolve (and validate) every host's variables before touching anything.
        self.variables = {h.name: playbook.resolve_vars(given, h.vars) for h in hosts}
        self.connect = connect
        self.hooks = hooks or Hooks()
        self.files_dir = files_dir
        self.forks = forks
        self.check_mode = check_mode
        self.resume = resume or Resume()
        self.outcomes = {name: HostOutcome(name) for name in plan.hosts}
        self.batches_done: list[int] = []
        self._remotes: dict[str, Remote] = {}
        # Connections are opened ahead of their batch on these threads (see _prefetch).
        self._connector = ThreadPoolExecutor(forks, thread_name_prefix="troupe-connect")
        self._lock = threading.Lock()
        self._fenced: TroupeError | None = None

    # ---- the run -----------------------------------------------------------------------

    def run(self) -> RunResult:
        return self._drive(self._run_phases)

    def _drive(self, body: Callable[[ThreadPoolExecutor], tuple[RunOutcome, str]]) -> RunResult:
        started = time.monotonic()
        pool = ThreadPoolExecutor(self.forks, thread_name_prefix="troupe-host")
        self._prefetch(tuple(h for b in self.plan.batches for h in b.hosts))
        try:
            outcome, reason = body(pool)
        finally:
            pool.shutdown(wait=True)
            self._connector.shutdown(wait=True, cancel_futures=True)
            self._close_all()
        result = RunResult(outcome, self.outcomes, self.batches_done, reason)
        result.duration = time.monotonic() - started
        self.hooks.on_event(RunFinished(result))
        return result

    def revert(self, reason: str) -> RunResult:
        """Undo a finished deployment: every batch of the plan counts as done (with what
        `resume.previous` recorded before each host was touched), and all of them are
        rolled back, newest batch first. Nothing else runs."""
        return self._drive(lambda pool: self._revert(reason, pool))

    def _revert(self, reason: str, pool: ThreadPoolExecutor) -> tuple[RunOutcome, str]:
        for phase in self.plan.phases:
            if isinstance(phase, Batch):
                self._mark_done(phase)
        return self._rollback(RunOutcome.REVERTED, reason, pool)

    def _run_phases(self, pool: ThreadPoolExecutor) -> tuple[RunOutcome, str]:
        try:
            for phase in self._resumed(self.plan.phases):
                self._check_stop()
                self._phase(phase, pool)
        except _Stop as stop:
            if stop.outcome in (RunOutcome.FAILED, RunOutcome.ABORTED):
                return self._rollback(stop.outcome, stop.reason, pool)
            return stop.outcome, stop.reason
        return RunOutcome.SUCCEEDED, ""

    def _resumed(self, phases: tuple[Phase, ...]) -> list[Phase]:
        """The phases still to run: everything after the last batch the journal has.
        (A gate or pause after it runs again: the earlier owner may have died in it.)"""
        last = max(self.resume.batches_done, default=0)
        cut = next(
            (i + 1 for i, p in enumerate(phases) if isinstance(p, Batch) and p.number == last), 0
        )
        for phase in phases[:cut]:
            if isinstance(phase, Batch):
                self._mark_done(phase)
        return list(phases[cut:])

    def _mark_done(self, batch: Batch) -> None:
        for name in batch.hosts:
            outcome = self.outcomes[name]
            outcome.batch, outcome.touched = batch.number, True
            outcome.previous = dict(self.resume.previous.get(name, {}))
            outcome.move(HostState.RUNNING)
            outcome.move(HostState.OK)
        self.batches_done.append(batch.number)

    def _check_stop(self) -> None:
        if self._fenced is not None:
            raise _Stop(
                RunOutcome.INTERRUPTED, f"stopped before touching more hosts: {self._fenced}"
            )
        if self.hooks.abort.is_set():
            raise _Stop(RunOutcome.ABORTED, self.hooks.aborted_by or "aborted")
        if self.hooks.stop.is_set():
            raise _Stop(RunOutcome.INTERRUPTED, "interrupted")

    def _phase(self, phase: Phase, pool: ThreadPoolExecutor) -> None:
        if isinstance(phase, Batch):
            self._batch(phase, pool)
        elif isinstance(phase, Gate):
            self._gate(phase, pool)
        elif isinstance(phase, Pause):
            self._pause(phase)
        elif isinstance(phase, Approve):
            self._ask(ApprovalNeeded("approval step", phase.roles))

    # ---- batches -----------------------------------------------------------------------

    def _batch(self, batch: Batch, pool: ThreadPoolExecutor) -> None:
        self.hooks.on_event(BatchStarted(batch.number, batch.hosts))
        slots = threading.Semaphore(batch.concurrency)

        def one(name: str) -> None:
            with slots:
                self._host(name, batch.number)

        list(pool.map(one, batch.hosts))
        ok = tuple(n for n in batch.hosts if self.outcomes[n].state == HostState.OK)
        failed = tuple(n for n in batch.hosts if self.outcomes[n].state == HostState.FAILED)
        if len(ok) + len(failed) < len(batch.hosts):
            self._check_stop()  # stopped inside the batch: it is not done, and not journaled
        self.hooks.on_event(BatchDone(batch.number, ok, failed))
        self._check_stop()
        self.batches_done.append(batch.number)
        self._apply_failure_policy(batch, failed)

    def _apply_failure_policy(self, batch: Batch, failed: tuple[str, ...]) -> None:
        if not failed:
            return
        share = 100 * len(failed) / len(batch.hosts)
        total = sum(o.state == HostState.FAILED for o in self.outcomes.values())
        budget = self.plan.failure_budget
        where = f"{len(failed)} of {len(batch.hosts)} hosts failed in batch {batch.number}"
        if share > self.plan.max_fail_percentage:
            raise _Stop(
                RunOutcome.FAILED,
                f"{where} (max_fail_percentage {self.plan.max_fail_percentage:g}%)",
            )
        if budget is not None and total > budget:
            raise _Stop(
                RunOutcome.FAILED, f"{total} hosts failed, over the failure budget of {budget}"
            )

    # ---- one host ----------------------------------------------------------------------

    def _host(self, name: str, batch: int) -> None:
        outcome = self.outcomes[name]
        outcome.batch = batch
        if not self._guard():
            return
        outcome.move(HostState.RUNNING)
        step = "connect"
        try:
            remote = self._remote(name)
            step = "capture"
            context = self._context(name)
            outcome.previous = self._capture(remote, context)
            context["previous"] = outcome.previous
            for task in self.playbook.tasks:
                step = task.title
                if not self._guard():  # before every step: a lease can run out mid-host
                    outcome.move(HostState.INTERRUPTED)
                    break
                if not self._task(remote, task, context, outcome):
                    break
            else:
                self._verify(remote, context, outcome)
        except TroupeError as exc:  # unreachable host, template error, missing file, ...
            outcome.fail(step, str(exc))
        self.hooks.on_event(HostDone(name, outcome.state, outcome.error))

    def _guard(self) -> bool:
        """The fencing hook, before each host and each step: a driver that lost its claim
        must not touch a host again. Cheap: the claim checks its lease locally and reads
        Slack only when its last confirmation is old."""
        if self._fenced is not None or self._stopping():
            return False
        try:
            self.hooks.guard()
        except TroupeError as exc:
            self._fenced = exc
            return False
        return True

    def _stopping(self) -> bool:
        return self.hooks.stop.is_set() or self.hooks.abort.is_set() or self._fenced is not None

    def _context(self, name: str) -> dict[str, Any]:
        host = self.hosts[name]
        return {
            **self.variables[name],
            "host": host.template_view(),
            "playbook": self.playbook.name,
        }

    def _capture(self, remote: Remote, context: dict[str, Any]) -> dict[str, str]:
        """Read what rollback will need, before the first change."""
        previous: dict[str, str] = {}
        for key, template in self.playbook.capture.items():
            result = remote.run(render_command(template, context, f"capture {key}"), timeout=60)
            if not result.ok:
                raise TemplateProblem(
                    f"capture {key}", f"exit {result.exit_code}: {result.stderr.strip()}"
                )
            previous[key] = result.stdout.strip()
        return previous

    def _task(
        self, remote: Remote, task: Task, context: dict[str, Any], outcome: HostOutcome
    ) -> bool:
        if not _applies(task, context):
            self.hooks.on_event(StepDone(outcome.name, task.title, "skipped", "when is false"))
            return True
        outcome.touched = True
        started = time.monotonic()
        ok, detail = self._attempts(remote, task, context, outcome.name)
        status = "ok" if ok else "failed"
        self.hooks.on_event(
            StepDone(outcome.name, task.title, status, detail, time.monotonic() - started)
        )
        if not ok:
            outcome.fail(task.title, detail)
        return ok

    def _attempts(
        self, remote: Remote, task: Task, context: dict[str, Any], host: str
    ) -> tuple[bool, str]:
        detail = ""
        for attempt in range(task.retries + 1):
            if attempt:
                self.hooks.on_event(StepDone(host, task.title, "retrying", detail))
                time.sleep(task.retry_delay)
            ok, detail = self._once(remote, task, context)
            if ok:
                return True, detail
        return False, detail

    def _once(self, remote: Remote, task: Task, context: dict[str, Any]) -> tuple[bool, str]:
        if task.put is not None:
            src = self.files_dir / render_text(task.put.src, context, f"{task.title}: src")
            dest = render_text(task.put.dest, context, f"{task.title}: dest")
            if self.check_mode:
                return True, f"check mode: would put {src} -> {dest}"
            remote.put(src, dest, mode=task.put.mode, sudo=task.sudo)
            return True, f"put {dest}"
        command = render_command(task.run or "", context, task.title)
        if self.check_mode:
            return True, f"check mode: would run {command}"
        try:
            result = remote.run(command, sudo=task.sudo, timeout=task.timeout)
        except CommandTimeout as exc:
            return False, str(exc)
        if result.ok:
            return True, result.stdout.strip()[-200:]
        return False, f"exit {result.exit_code}: {(result.stderr or result.stdout).strip()[-300:]}"

    def _verify(self, remote: Remote, context: dict[str, Any], outcome: HostOutcome) -> None:
        for name in [] if self.check_mode else self.playbook.verify:
            passed, detail = self._probe(remote, name, context)
            self.hooks.on_event(CheckDone(name, outcome.name, passed, detail))
            if not passed:
                outcome.fail(f"check {name}", detail)
                return
        outcome.move(HostState.OK)

    def _probe(self, remote: Remote, name: str, context: dict[str, Any]) -> tuple[bool, str]:
        check = self.playbook.checks[name]
        url = render_text(check.http, context, f"check {name}") if check.http else None
        command = render_command(check.command, context, f"check {name}") if check.command else None
        body = render_text(check.body, context, f"check {name}") if check.body else None
        return run_check(Probe(check, url, command, body), remote, self._stopping)

    # ---- gates, pauses, approvals ------------------------------------------------------

    def _gate(self, gate: Gate, pool: ThreadPoolExecutor) -> None:
        deployed = [o.name for o in self.outcomes.values() if o.state == HostState.OK]

        def probe(name: str) -> bool:
            passed, detail = self._probe(self._remote(name), gate.check, self._context(name))
            self.hooks.on_event(CheckDone(gate.check, name, passed, detail))
            return passed

        results = list(pool.map(probe, deployed))
        passed, failed = sum(results), len(results) - sum(results)
        verdict = _verdict(gate, passed, failed)
        self.hooks.on_event(GateDone(gate.check, verdict, passed, failed))
        if verdict == "failure":
            raise _Stop(
                RunOutcome.FAILED, f"check {gate.check} failed on {failed} of {len(results)} hosts"
            )
        if verdict == "inconclusive":
            self._ask(
                ApprovalNeeded(
                    f"check {gate.check} is inconclusive ({passed} passed, {failed} failed)"
                )
            )

    def _pause(self, pause: Pause) -> None:
        self.hooks.on_event(Paused(pause.seconds))
        if pause.seconds is None:
            self._ask(ApprovalNeeded("paused until approved"))
        else:
            deadline = time.monotonic() + pause.seconds
            while (left := deadline - time.monotonic()) > 0:
                self.hooks.stop.wait(min(left, 0.2))  # abort, too, ends a pause early
                self._check_stop()

    def _ask(self, request: ApprovalNeeded) -> None:
        self.hooks.on_event(request)
        if not self.hooks.approve(request):
            self._check_stop()
            raise _Stop(RunOutcome.ABORTED, f"not approved: {request.reason}")

    # ---- rollback ----------------------------------------------------------------------

    def _rollback(
        self, outcome: RunOutcome, reason: str, pool: ThreadPoolExecutor
    ) -> tuple[RunOutcome, str]:
        touched = [o for o in self.outcomes.values() if o.touched]
        if not touched or not self.playbook.rollback:
            why = "" if touched else " (no host was changed)"
            return outcome, reason + (why or " (the playbook has no rollback tasks)")
        self.hooks.on_event(RollbackStarted(tuple(o.name for o in touched), reason))
        for batch in sorted({o.batch or 0 for o in touched}, reverse=True):
            names = [o.name for o in touched if o.batch == batch]
            list(pool.map(self._roll_back_host, names))
        if any(o.state == HostState.ROLLBACK_FAILED for o in touched):
            return RunOutcome.ROLLBACK_INCOMPLETE, reason
        return outcome, reason

    def _roll_back_host(self, name: str) -> None:
        outcome = self.outcomes[name]
        outcome.move(HostState.ROLLING_BACK)
        error = None
        try:
            remote = self._remote(name)
            context = {**self._context(name), "previous": outcome.previous}
            for task in self.playbook.rollback:
                if not _applies(task, context):
                    continue
                ok, detail = self._attempts(remote, task, context, name)
                if not ok:
                    error = f"{task.title}: {detail}"
                    break
        except TroupeError as exc:
            error = str(exc)
        outcome.move(HostState.ROLLBACK_FAILED if error else HostState.ROLLED_BACK)
        self.hooks.on_event(HostRolledBack(name, error is None, error))

    # ---- connections -------------------------------------------------------------------

    def _prefetch(self, names: tuple[str, ...]) -> None:
        """Open every connection at the start, `forks` at a time, so that connecting
        overlaps the first batch's work instead of delaying each batch. Connecting is not
        touching: nothing runs on a host. Failures are left for the host's own turn,
        which reports them (a dead connection is reopened then, too)."""
        for name in names:
            self._connector.submit(self._open_quietly, name)

    def _open_quietly(self, name: str) -> None:
        if self._fenced is None and not self.hooks.stop.is_set():
            with contextlib.suppress(TroupeError):
                self._remote(name).open()

    def _remote(self, name: str) -> Remote:
        with self._lock:
            remote = self._remotes.get(name)
        if remote is None:
            remote = self.connect(self.hosts[name])  # slow: outside the lock
            with self._lock:
                self._remotes[name] = remote
        return remote

    def _close_all(self) -> None:
        for remote in self._remotes.values():
            with contextlib.suppress(RemoteError):  # closing a dead connection: nothing to do
                remote.close()


def _applies(task: Task, context: dict[str, Any]) -> bool:
    """A task's `when` condition (no condition: it always applies)."""
    return task.when is None or evaluate(task.when, context, f"{task.title}: when")


def _verdict(gate: Gate, passed: int, failed: int) -> str:
    total = passed + failed
    if total == 0:
        return "inconclusive"
    if 100 * failed / total > gate.failure:
        return "failure"
    if 100 * passed / total >= gate.success:
        return "success"
    return "inconclusive"
