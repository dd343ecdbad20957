"""Every sentence Troupe shows a person about plans and runs (pure).

The terminal (now) and Slack (later) render the same events through these
functions, so the wording lives in one place and is snapshot-tested.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from troupe.planner import Batch, Gate, Pause, Phase, Plan
from troupe.playbooks import Playbook
from troupe.progress import (
    ApprovalNeeded,
    BatchDone,
    BatchStarted,
    CheckDone,
    Event,
    GateDone,
    HostDone,
    HostRolledBack,
    HostState,
    Paused,
    RollbackStarted,
    RunFinished,
    RunOutcome,
    RunResult,
    StepDone,
)
from troupe.units import format_duration


def plan_text(plan: Plan, playbook: Playbook) -> str:
    """What `troupe plan` prints: every phase, in order, and the steps of each host."""
    lines = [
        f"Plan: {plan.playbook} ({plan.strategy}) on {len(plan.hosts)} hosts",
    ]
    if playbook.description:
        lines.append(f"  {playbook.description}")
    lines.append(_policy(plan))
    lines += [f"  {i}. {_phase(p)}" for i, p in enumerate(plan.phases, 1)]
    lines.append("Each host: " + _host_steps(playbook))
    if playbook.rollback:
        lines.append(
            "On failure, touched hosts are rolled back newest batch first: "
            + ", ".join(t.title for t in playbook.rollback)
        )
    else:
        lines.append("On failure: no rollback tasks; failed hosts are left as they are.")
    return "\n".join(lines)


def _policy(plan: Plan) -> str:
    if plan.strategy == "canary":
        return "  stops at the first failed host or failed check"
    budget = "" if plan.failure_budget is None else f", failure budget {plan.failure_budget} hosts"
    return f"  stops when more than {plan.max_fail_percentage:g}% of a batch fails{budget}"


def _phase(phase: Phase) -> str:
    if isinstance(phase, Batch):
        at_once = f", {phase.concurrency} at a time" if phase.concurrency < len(phase.hosts) else ""
        return f"batch {phase.number}: {', '.join(phase.hosts)}{at_once}"
    if isinstance(phase, Gate):
        return (
            f"check {phase.check} on deployed hosts: success if ≥ {phase.success:g}% pass, "
            f"failure if > {phase.failure:g}% fail, else ask a person"
        )
    if isinstance(phase, Pause):
        return (
            "pause until approved"
            if phase.seconds is None
            else f"pause {format_duration(phase.seconds)}"
        )
    roles = f" by {', '.join(phase.roles)}" if phase.roles else ""
    return f"wait for approval{roles}"


def _host_steps(playbook: Playbook) -> str:
    steps = [f"capture {k}" for k in playbook.capture]
    steps += [t.title + (f" (when {t.when})" if t.when else "") for t in playbook.tasks]
    steps += [f"check {c}" for c in playbook.verify]
    return " → ".join(steps)


def event_line(event: Event) -> str | None:
    """One line for a log or a plain terminal; None for events not worth a line."""
    render = _LINES.get(type(event))
    return render(event) if render is not None else None


def _batch_started(e: BatchStarted) -> str:
    return f"batch {e.number}: {', '.join(e.hosts)}"


def _step(e: StepDone) -> str | None:
    if e.status == "ok":
        return None
    return f"  {e.host}: {e.step} {e.status}" + (f": {e.detail}" if e.detail else "")


def _host_done(e: HostDone) -> str:
    return f"  {e.host}: {e.state.value}" + (f" ({e.error})" if e.error else "")


def _check(e: CheckDone) -> str:
    return f"  {e.host}: check {e.check} {'passed' if e.passed else 'FAILED'}: {e.detail}"


def _gate(e: GateDone) -> str:
    return f"check {e.check}: {e.verdict} ({e.passed} passed, {e.failed} failed)"


def _batch_done(e: BatchDone) -> str:
    failed = f", {len(e.failed)} failed: {', '.join(e.failed)}" if e.failed else ""
    return f"batch {e.number} done: {len(e.ok)} ok{failed}"


def _paused(e: Paused) -> str:
    return (
        "paused until approved" if e.seconds is None else f"paused for {format_duration(e.seconds)}"
    )


def _approval(e: ApprovalNeeded) -> str:
    return f"approval needed: {e.reason}" + (f" (roles: {', '.join(e.roles)})" if e.roles else "")


def _rollback(e: RollbackStarted) -> str:
    return f"rolling back {', '.join(e.hosts)}: {e.reason}"


def _rolled_back(e: HostRolledBack) -> str:
    return f"  {e.host}: " + ("rolled back" if e.ok else f"ROLLBACK FAILED ({e.error})")


def _finished(e: RunFinished) -> str:
    return result_text(e.result)


_LINES: dict[type, Callable[[Any], str | None]] = {
    BatchStarted: _batch_started,
    StepDone: _step,
    HostDone: _host_done,
    CheckDone: _check,
    GateDone: _gate,
    BatchDone: _batch_done,
    Paused: _paused,
    ApprovalNeeded: _approval,
    RollbackStarted: _rollback,
    HostRolledBack: _rolled_back,
    RunFinished: _finished,
}


def result_text(result: RunResult) -> str:
    """The closing summary: outcome, why, and the state of every host."""
    head = f"{_OUTCOME[result.outcome]} in {result.duration:.1f}s"
    if result.reason:
        head += f": {result.reason}"
    lines = [head]
    for state in HostState:
        names = result.in_state(state)
        if names:
            lines.append(f"  {state.value}: {', '.join(names)}")
    if result.outcome == RunOutcome.INTERRUPTED:
        lines.append(
            "  the fleet is mixed: hosts above marked ok run the new version, "
            "pending ones were not touched"
        )
    return "\n".join(lines)


_OUTCOME = {
    RunOutcome.SUCCEEDED: "Succeeded",
    RunOutcome.FAILED: "Failed",
    RunOutcome.ROLLBACK_INCOMPLETE: "FAILED, ROLLBACK INCOMPLETE (a person must look)",
    RunOutcome.ABORTED: "Aborted",
    RunOutcome.INTERRUPTED: "Interrupted",
}


# ---- chat replies (the replica's side of the conversation) -----------------------------------

HELP = {
    "deploy": "`deploy <playbook> [to <group|hosts>] [key=value ...]`: run a playbook "
    "(one replica claims it; progress and the result appear in this thread)",
    "roll call": "`roll call`: every replica answers with its name and version",
    "status": "`status`: the commands being worked on, and by whom",
    "help": "`help [command]`: this list, or one command's usage",
}


def help_text(topic: str | None = None) -> str:
    if topic is not None:
        return HELP[topic]
    return "Commands (mention me, or start with the prefix):\n" + "\n".join(
        f"• {line}" for line in HELP.values()
    )


def roll_call_text(replica: str, version: str, busy_with: str | None) -> str:
    state = f"busy with {busy_with}" if busy_with else "idle"
    return f":raising_hand: *{replica}* here · version {version} · {state}"


def status_text(claims: list[tuple[str, str, int]]) -> str:
    """`claims`: (command text, owner replica, generation) of every open command."""
    if not claims:
        return "Nothing is running."
    lines = [f"• {text} — {owner} (generation {gen})" for text, owner, gen in claims]
    return "Working on:\n" + "\n".join(lines)


def refused_text(error: str) -> str:
    return f":warning: {error}"


def lost_text(replica: str, error: str) -> str:
    return (
        f":octagonal_sign: {replica} stopped: {error}. Another replica carries on from the journal."
    )


def started_text(replica: str, plan: str) -> str:
    return f":rocket: {replica} starts\n```\n{plan}\n```"
