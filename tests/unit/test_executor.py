"""troupe.executor over the scripted fake Remote: order, failure policy, rollback."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.unit.test_planner import hosts
from troupe.errors import TroupeError
from troupe.executor import Executor, Hooks, Resume
from troupe.planner import Batch, Plan, make_plan
from troupe.playbooks import Playbook
from troupe.progress import (
    ApprovalNeeded,
    BatchDone,
    BatchStarted,
    Event,
    HostState,
    Paused,
    RollbackStarted,
    RunOutcome,
    RunResult,
    StepDone,
)
from troupe.remote import Rule, scripted

BOOK: dict[str, Any] = {
    "name": "deploy",
    "vars": {"version": {"required": True}},
    "capture": {"was": "cat /srv/version"},
    "tasks": [
        {"name": "unpack", "run": "unpack {{ version }}"},
        {"name": "switch", "run": "switch {{ version }}"},
    ],
    "rollback": [{"name": "restore", "run": "switch {{ previous.was }}"}],
}


def run(
    book: dict[str, Any],
    rules: list[Rule],
    n: int = 6,
    given: dict[str, Any] | None = None,
    approve: bool = False,
    **executor: Any,
) -> tuple[RunResult, list[tuple[str, str]], list[Event]]:
    playbook = Playbook.model_validate(book)
    log: list[tuple[str, str]] = []
    events: list[Event] = []
    hooks = Hooks(on_event=events.append, approve=lambda request: approve)
    for key, value in executor.pop("hooks", {}).items():
        setattr(hooks, key, value)
    fleet = hosts(n)
    plan = make_plan(playbook, fleet, forks=executor.pop("forks", 4))
    result = Executor(
        playbook,
        plan,
        fleet,
        {"version": "2.0"} if given is None else given,
        scripted(rules, log),
        hooks,
        **executor,
    ).run()
    return result, log, events


def rolling(**strategy: Any) -> dict[str, Any]:
    return {**BOOK, "strategy": {"rolling": strategy}}


def commands(log: list[tuple[str, str]], host: str) -> list[str]:
    return [c for h, c in log if h == host and c != "close"]


def test_success_runs_every_host_in_batch_order() -> None:
    result, log, events = run(rolling(serial=2), [Rule("cat /srv/version", stdout="1.0\n")])
    assert result.outcome == RunOutcome.SUCCEEDED and result.outcome.exit_code == 0
    assert result.in_state(HostState.OK) == [f"h{i:02d}" for i in range(1, 7)]
    assert commands(log, "h01") == ["cat /srv/version", "unpack 2.0", "switch 2.0"]
    assert [e.hosts for e in events if isinstance(e, BatchStarted)] == [
        ("h01", "h02"),
        ("h03", "h04"),
        ("h05", "h06"),
    ]
    first_of_batch_2 = next(i for i, (h, _) in enumerate(log) if h == "h03")
    assert all(h in ("h01", "h02") for h, _ in log[:first_of_batch_2])
    assert result.batches_done == [1, 2, 3]


def test_failure_rolls_back_touched_hosts_newest_batch_first() -> None:
    rules = [Rule("cat /srv/version", stdout="1.0\n"), Rule("switch 2.0", 1, hosts={"h04"})]
    result, log, events = run(rolling(serial=2), rules)
    assert result.outcome == RunOutcome.FAILED and result.outcome.exit_code == 1
    assert "1 of 2 hosts failed in batch 2" in result.reason
    assert result.hosts["h04"].step == "switch"
    assert result.in_state(HostState.ROLLED_BACK) == ["h01", "h02", "h03", "h04"]
    assert result.in_state(HostState.PENDING) == ["h05", "h06"]  # never touched
    restores = [h for h, c in log if c == "switch 1.0"]
    assert sorted(restores[:2]) == ["h03", "h04"] and sorted(restores[2:]) == ["h01", "h02"]
    assert any(isinstance(e, RollbackStarted) for e in events)


def test_max_fail_percentage_and_failure_budget() -> None:
    rules = [Rule("switch 2.0", 1, hosts={"h01", "h04"})]
    tolerant, _, _ = run(rolling(serial=3, max_fail_percentage=34), rules)
    assert tolerant.outcome == RunOutcome.SUCCEEDED
    assert tolerant.in_state(HostState.FAILED) == ["h01", "h04"]
    budget, _, _ = run(rolling(serial=3, max_fail_percentage=34, failure_budget=1), rules)
    assert budget.outcome == RunOutcome.FAILED
    assert "over the failure budget of 1" in budget.reason


def test_canary_check_failure_rolls_back_only_the_canary() -> None:
    book = {
        **BOOK,
        "checks": {"up": {"command": "healthy", "retries": 0}},
        "strategy": {"canary": {"steps": [{"hosts": 1}, {"check": "up"}, {"hosts": "100%"}]}},
    }
    result, log, _ = run(book, [Rule("healthy", 1), Rule("cat", stdout="1.0")])
    assert result.outcome == RunOutcome.FAILED
    assert result.in_state(HostState.ROLLED_BACK) == ["h01"]
    assert {h for h, c in log if c != "close"} == {"h01"}


def test_inconclusive_gate_asks_a_person() -> None:
    book = {
        **BOOK,
        "checks": {"up": {"command": "healthy", "retries": 0}},
        "strategy": {
            "canary": {
                "steps": [{"hosts": 2}, {"check": "up", "success": "100%", "failure": "50%"}]
            }
        },
    }
    rules = [Rule("healthy", 1, hosts={"h02"})]
    denied, _, events = run(book, rules, approve=False)
    assert denied.outcome == RunOutcome.ABORTED and denied.outcome.exit_code == 4
    assert any(isinstance(e, ApprovalNeeded) and "inconclusive" in e.reason for e in events)
    assert denied.in_state(HostState.ROLLED_BACK) == ["h01", "h02"]
    approved, _, _ = run(book, rules, approve=True)
    assert approved.outcome == RunOutcome.SUCCEEDED


def test_connect_failure_fails_the_host_without_touching_it() -> None:
    rules = [Rule("cat", raises="connect", hosts={"h02"})]
    result, log, _ = run(rolling(serial=3), rules)
    assert result.hosts["h02"].state == HostState.FAILED
    assert result.hosts["h02"].touched is False
    assert "connection refused" in (result.hosts["h02"].error or "")
    assert "h02" not in [h for h, c in log if c.startswith("switch 1")]


def test_timeout_fails_the_task_and_retries_then_succeed() -> None:
    timed, _, _ = run(rolling(), [Rule("unpack", raises="timeout", hosts={"h01"})], n=2)
    assert timed.hosts["h01"].step == "unpack"
    assert "timed out" in (timed.hosts["h01"].error or "")
    book = rolling()
    book["tasks"] = [{"name": "flaky", "run": "flaky", "retries": 2, "retry_delay": 0}]
    retried, log, _ = run(book, [Rule("flaky", 1, times=2)], n=1)
    assert retried.outcome == RunOutcome.SUCCEEDED
    assert commands(log, "h01").count("flaky") == 3


def test_when_false_skips_the_task() -> None:
    book = rolling()
    book["vars"] = {"version": {"required": True}, "env": {"default": "staging"}}
    book["tasks"] = [*BOOK["tasks"], {"run": "page ops", "when": "env == 'production'"}]
    result, log, _ = run(book, [], n=1)
    assert result.outcome == RunOutcome.SUCCEEDED
    assert "page ops" not in commands(log, "h01")


def test_run_time_values_reach_the_shell_quoted() -> None:
    result, log, _ = run(rolling(), [], n=1, given={"version": "1.0; touch pwned"})
    assert result.outcome == RunOutcome.SUCCEEDED
    assert "unpack '1.0; touch pwned'" in commands(log, "h01")


def test_a_guard_that_fails_stops_before_the_next_host() -> None:
    calls = []

    def guard() -> None:  # called before each host and before each of its two steps
        calls.append(1)
        if len(calls) > 6:
            raise TroupeError("claim lost to replica b")

    result, log, _ = run(rolling(serial=1), [], hooks={"guard": guard})
    assert result.outcome == RunOutcome.INTERRUPTED
    assert "claim lost to replica b" in result.reason
    assert {h for h, c in log if c != "close"} == {"h01", "h02"}
    assert result.in_state(HostState.PENDING) == ["h03", "h04", "h05", "h06"]


def test_a_guard_that_fails_mid_host_stops_before_the_next_step() -> None:
    calls = []

    def guard() -> None:
        calls.append(1)
        if len(calls) > 2:  # the host's guard, then its first step's; the second fails
            raise TroupeError("lease expired")

    result, log, _ = run(rolling(serial=1), [], n=1, hooks={"guard": guard})
    assert result.outcome == RunOutcome.INTERRUPTED
    assert result.hosts["h01"].state == HostState.INTERRUPTED
    assert [c for _, c in log if c != "close"] == ["cat /srv/version", "unpack 2.0"]


def test_stop_event_interrupts_at_a_safe_point() -> None:
    stop = threading.Event()
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, BatchStarted) and event.number == 2:
            stop.set()

    result, _, _ = run(rolling(serial=2), [], hooks={"stop": stop, "on_event": on_event})
    assert result.outcome == RunOutcome.INTERRUPTED and result.outcome.exit_code == 130
    assert result.in_state(HostState.OK) == ["h01", "h02"]
    assert result.in_state(HostState.PENDING) == ["h03", "h04", "h05", "h06"]  # none begun


def test_check_mode_changes_nothing() -> None:
    result, log, _ = run(rolling(), [], n=2, check_mode=True)
    assert result.outcome == RunOutcome.SUCCEEDED
    assert all(c in ("cat /srv/version", "close") for _, c in log)


def test_invalid_variables_are_refused_before_any_host() -> None:
    with pytest.raises(TroupeError, match="variable 'version' is required"):
        run(rolling(), [], given={})


def test_resume_skips_journaled_batches_and_rolls_them_back_with_their_capture() -> None:
    rules = [Rule("cat /srv/version", stdout="1.5\n"), Rule("switch 2.0", 1, hosts={"h05"})]
    resume = Resume(frozenset({1, 2}), {f"h0{i}": {"was": "1.0"} for i in range(1, 5)})
    result, log, events = run(rolling(serial=2), rules, resume=resume)
    assert [e.number for e in events if isinstance(e, BatchStarted)] == [3]
    assert not [c for h, c in log if h in ("h01", "h02", "h03", "h04") and "unpack" in c]
    assert result.outcome == RunOutcome.FAILED
    assert result.batches_done == [1, 2, 3]
    assert ("h01", "switch 1.0") in log  # rolled back with what the first owner captured
    assert result.in_state(HostState.ROLLED_BACK) == ["h01", "h02", "h03", "h04", "h05", "h06"]
    assert ("h05", "switch 1.5") in log


def test_a_batch_stopped_midway_is_not_reported_done() -> None:
    stop = threading.Event()
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, StepDone) and event.step == "unpack":
            stop.set()  # between unpack and switch: the host is left half-way

    book = {**rolling(serial=1), "capture": {}}
    result, _, _ = run(book, [], n=2, hooks={"stop": stop, "on_event": on_event})
    assert result.outcome == RunOutcome.INTERRUPTED
    assert result.hosts["h01"].state == HostState.INTERRUPTED
    assert not [e for e in events if isinstance(e, BatchDone)]  # nothing to journal
    assert result.batches_done == []


def test_abort_during_a_pause_rolls_back_at_once() -> None:
    hooks = Hooks()

    def abort_when_paused(event: Event) -> None:
        if isinstance(event, Paused):
            hooks.aborted_by = "aborted by <@U0BOB>"
            hooks.abort.set()

    book = {**BOOK, "strategy": {"canary": {"steps": [{"hosts": 1}, {"pause": "1h"}]}}}
    result, log, _ = run(
        book,
        [Rule("cat /srv/version", stdout="1.0\n")],
        n=3,
        hooks={"on_event": abort_when_paused, "abort": hooks.abort},
    )
    assert result.outcome == RunOutcome.ABORTED, result.reason
    assert result.in_state(HostState.ROLLED_BACK) == ["h01"]
    assert result.in_state(HostState.PENDING) == ["h02", "h03"]
    assert commands(log, "h01")[-1] == "switch 1.0"


def test_revert_rolls_back_exactly_the_journaled_hosts_newest_batch_first() -> None:
    playbook = Playbook.model_validate(rolling(serial=1))
    fleet = hosts(4)
    plan = Plan(
        "deploy", "rollback", ("h03", "h01"), (Batch(1, ("h01",), 1), Batch(2, ("h03",), 1))
    )
    log: list[tuple[str, str]] = []
    previous = {"h01": {"was": "1.0"}, "h03": {"was": "0.9"}}
    result = Executor(
        playbook,
        plan,
        [fleet[0], fleet[2]],
        {"version": "2.0"},
        scripted([], log),
        Hooks(),
        resume=Resume(frozenset({1, 2}), previous),
        forks=1,
    ).revert("rollback of deployment 1.0001")
    assert result.outcome == RunOutcome.REVERTED and result.outcome.exit_code == 0
    assert [c for _, c in log if c != "close"] == ["switch 0.9", "switch 1.0"]
    assert sorted(result.in_state(HostState.ROLLED_BACK)) == ["h01", "h03"]
