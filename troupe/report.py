"""Every sentence Troupe shows a person about plans and runs (pure).

The terminal (now) and Slack (later) render the same events through these
functions, so the wording lives in one place and is snapshot-tested.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from troupe.commands import USAGE
from troupe.planner import Batch, Gate, Pause, Phase, Plan
from troupe.playbooks import Playbook
from troupe.progress import (
    ApprovalNeeded,
    BatchDone,
    BatchStarted,
    Board,
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
    RunOutcome.REVERTED: "Rolled back",
}


# ---- chat replies (the replica's side of the conversation) -----------------------------------

# What each command does, after its usage line from troupe.commands (one source for both).
_DOES = {
    "deploy": ": run a playbook "
    "(one replica claims it; progress and the result appear in this thread)",
    "plan": ": post the plan with Approve / Abort buttons; it runs once someone allowed approves",
    "approve": " (in a deployment's thread): let a paused deployment go on "
    "(or click Approve, or react :+1: to the approval message)",
    "abort": " (in a deployment's thread): stop at the next safe point and roll back",
    "rollback": ": undo the latest deployment (or the one named by its link or ts) "
    "on exactly the hosts it changed, newest batch first",
    "status": ": the commands being worked on, by whom, and the locks",
    "history": ": the last n deployments (default 10): who, what, result",
    "lock": ": stop others deploying to <env> (e.g. `lock web db migration for 2h`)",
    "unlock": ": remove the lock on <env>",
    "roll call": ": every replica answers with its name and version",
    "census": ": the version on every host and every replica; flags a mixed fleet",
    "self-update": ": update the replicas one at a time to a git ref",
    "help": ": this list, or one command's usage",
}
HELP = {verb: f"`{usage}`{_DOES[verb]}" for verb, usage in USAGE.items()}


def help_text(topic: str | None = None) -> str:
    if topic is not None:
        return HELP[topic]
    return "Commands (mention me, or start with the prefix):\n" + "\n".join(
        f"• {line}" for line in HELP.values()
    )


def roll_call_text(replica: str, version: str, busy_with: str | None) -> str:
    state = f"busy with {busy_with}" if busy_with else "idle"
    return f":raising_hand: *{replica}* here · version {version} · {state}"


_ROLL_CALL = re.compile(
    r"^:raising_hand: \*(?P<name>[^*]+)\* here · version (?P<version>.+) · "
    r"(?P<state>idle|busy with \S+)$"
)


def read_roll_call(text: str) -> tuple[str, str, str] | None:
    """(replica, version, state) from a roll call answer: for the census and the web
    page's side panel (the version itself may contain ` · `: version · commit · tag)."""
    match = _ROLL_CALL.match(text)
    return (match["name"], match["version"], match["state"]) if match else None


def status_text(claims: list[tuple[str, str, int]], locks: list[str] | None = None) -> str:
    """`claims`: (command text, owner replica, generation) of every open command;
    `locks`: each live lock, described."""
    lines = [f"• {text} — {owner} (generation {gen})" for text, owner, gen in claims]
    text = "Working on:\n" + "\n".join(lines) if lines else "Nothing is running."
    if locks:
        text += "\nLocks:\n" + "\n".join(f"• :closed_lock_with_key: {lock}" for lock in locks)
    return text


def refused_text(error: str) -> str:
    return f":warning: {error}"


def lost_text(replica: str, error: str) -> str:
    return (
        f":octagonal_sign: {replica} stopped: {error}. Another replica carries on from the journal."
    )


def started_text(replica: str, plan: str) -> str:
    return f":rocket: {replica} starts\n```\n{plan}\n```"


def not_in_thread_text(verb: str) -> str:
    return f":information_source: `{verb}` works in the thread of a deployment that is running."


# ---- the progress message (one per deployment, edited in place) -------------------------------

_GLYPH = {
    HostState.PENDING: "·",
    HostState.RUNNING: "▶",
    HostState.OK: "✓",
    HostState.FAILED: "✗",
    HostState.ROLLING_BACK: "↺",
    HostState.ROLLED_BACK: "↩",
    HostState.ROLLBACK_FAILED: "‼",
    HostState.INTERRUPTED: "‖",
}
_COLUMNS = 4


def progress_text(title: str, board: Board, finished: str | None = None) -> str:
    """Header, counts and a grid of hosts; `finished` replaces the batch line at the end."""
    counts = board.counts()
    tally = ", ".join(f"{n} {state.value}" for state, n in counts.items())
    where = finished or f"batch {board.batch} of {board.batches}" + (
        f" · {board.note}" if board.note else ""
    )
    width = max((len(h) for h in board.hosts), default=1)
    cells = [f"{_GLYPH[st]} {name:<{width}}" for name, st in board.hosts.items()]
    rows = ["  ".join(cells[i : i + _COLUMNS]).rstrip() for i in range(0, len(cells), _COLUMNS)]
    legend = "  ".join(f"{_GLYPH[st]} {st.value}" for st in HostState if st in counts)
    return f"{title} · {where}\n{tally}\n```\n" + "\n".join(rows) + f"\n```\n{legend}"


def progress_title(verb: str, playbook: str, replica: str) -> str:
    icon = ":rewind:" if verb == "rollback" else ":rocket:"
    what = verb if verb == "self-update" else f"{verb} {playbook}"
    return f"{icon} *{what}* by {replica}"


def step_output_text(host: str, output: str) -> str:
    """A `report: true` task's output on one host."""
    return f":speech_balloon: `{host}`: {output}"


_STEP_OUTPUT = re.compile(r"^:speech_balloon: `(?P<host>[^`]+)`: (?P<output>.*)$")


def read_step_output(text: str) -> tuple[str, str] | None:
    match = _STEP_OUTPUT.match(text)
    return (match["host"], match["output"]) if match else None


# `troupe self-update` prints `replica-2: 0.1.0 · 1a2b3c4 → 0.2.0 · 5d6e7f8 (healthy)`.
_UPDATED = re.compile(r"^(?P<name>[^:]+): (?P<old>.+?) → (?P<new>.+?)(?: \((?P<verdict>[^)]*)\))?$")


def self_update_census(outputs: dict[str, str]) -> str:
    """The census that ends a self-update: every replica's version after it, as each one
    reported it (its supervisor's verdict); flags a mixed fleet."""
    versions = {}
    for host, line in outputs.items():
        match = _UPDATED.match(line)
        name, new = (match["name"], match["new"]) if match else (host, line or "unknown")
        versions[name] = new
    return ":bar_chart: *Census* after the self-update\n" + _versions("replicas", versions)


def milestone_text(event: Event) -> str | None:
    """The thread replies besides the journal: pauses, approvals, failures, rollback."""
    if isinstance(event, Paused) and event.seconds is not None:
        return f":pause_button: {_paused(event)}"
    if isinstance(event, HostDone) and event.state == HostState.FAILED:
        return f":exclamation: {event.host} failed: {event.error}"
    if isinstance(event, RollbackStarted):
        return f":rewind: {_rollback(event)}"
    if isinstance(event, GateDone) and event.verdict != "success":
        return f":mag: {_gate(event)}"
    return None


# ---- approvals -------------------------------------------------------------------------------


def approval_text(reason: str, roles: tuple[str, ...], timeout: float) -> str:
    who = f" by someone with role {' or '.join(roles)}" if roles else ""
    return (
        f":raised_hand: *Approval needed*{who}: {reason}. Click Approve or Abort, react "
        f":+1:, or reply `approve` / `abort`. Aborts by itself in {format_duration(timeout)}."
    )


def approval_blocks(text: str, command_ts: str) -> list[dict[str, Any]]:
    """Block Kit: the text and two buttons (action ids match troupe.approvals)."""
    return [
        {"type": "section", "block_id": "approval", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "block_id": "approval_actions",
            "elements": [
                _button("Approve", "approve", "primary", command_ts),
                _button("Abort", "abort", "danger", command_ts),
            ],
        },
    ]


def _button(label: str, action_id: str, style: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label},
        "style": style,
        "value": value,
    }


def approval_closed_text(reason: str, verdict: str) -> str:
    return f":raised_hand: Approval for {reason}: {verdict}"


def approval_verdict(decision: str | None, timeout: float) -> str:
    if decision is None:
        return f"no decision within {format_duration(timeout)}; aborted"
    return decision


# ---- locks, history, census --------------------------------------------------------------


def locked_text(env: str, until: str, reason: str | None) -> str:
    why = f" ({reason})" if reason else ""
    return f":closed_lock_with_key: *{env}* is locked {until}{why}. `unlock {env}` to release it."


def unlocked_text(env: str, user: str) -> str:
    return f":unlock: *{env}* unlocked by <@{user}>"


def lock_held_text(env: str, owner: str, until: str, reason: str | None) -> str:
    why = f": {reason}" if reason else ""
    return f"*{env}* is locked by <@{owner}> {until}{why}"


def queued_text(held: str) -> str:
    return f":hourglass_flowing_sand: queued: {held}. This runs when the lock is released."


def done_summary(result: RunResult) -> str:
    """The done record's first line: what history lists."""
    touched = [n for n, o in result.hosts.items() if o.touched]
    hosts = f" · {len(touched)} hosts: {', '.join(touched)}" if touched else " · no host touched"
    return f"{result.outcome.value} in {result.duration:.1f}s{hosts}"


REVERTED_NOTE = ":rewind: rolled back by"


def reverted_note(rollback_ts: str) -> str:
    return f"{REVERTED_NOTE} `rollback` {rollback_ts}"


def history_text(entries: list[tuple[str, str, str, str, str]]) -> str:
    """(ts, user, command, result emoji, result summary) per deployment, newest first."""
    if not entries:
        return "No deployments in this channel yet."
    lines = [
        f"• `{ts}` <@{user}> `{command}` {emoji} {summary}"
        for ts, user, command, emoji, summary in entries
    ]
    return f"Last {len(entries)} deployments (newest first; `rollback <ts>` undoes one):\n" + (
        "\n".join(lines)
    )


def census_text(hosts: dict[str, str] | None, replicas: dict[str, str]) -> str:
    """Versions per host and per replica; flags a mixed fleet. `hosts` is None when no
    census command is configured."""
    lines = [":bar_chart: *Census*"]
    if hosts is None:
        lines.append("hosts: set `chatops.census_command` in troupe.yaml to list their versions")
    else:
        lines.append(_versions("hosts", hosts))
    lines.append(_versions("replicas", replicas))
    return "\n".join(lines)


def _versions(what: str, versions: dict[str, str]) -> str:
    if not versions:
        return f"{what}: none"
    distinct = sorted(set(versions.values()))
    flag = (
        f" :warning: *mixed*: {len(distinct)} versions"
        if len(distinct) > 1
        else f" all on {distinct[0]}"
    )
    rows = "\n".join(f"{name:<14} {version}" for name, version in sorted(versions.items()))
    return f"{what}:{flag}\n```\n{rows}\n```"
