"""Snapshot tests of what people read: `troupe plan` for the example playbooks, and the
run summary. Set UPDATE_SNAPSHOTS=1 to rewrite the files after a deliberate change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from troupe.inventory import Inventory
from troupe.planner import make_plan
from troupe.playbooks import load_playbook
from troupe.progress import (
    BatchDone,
    BatchStarted,
    Board,
    HostDone,
    HostOutcome,
    HostRolledBack,
    HostState,
    RollbackStarted,
    RunOutcome,
    RunResult,
    StepDone,
)
from troupe.report import (
    approval_blocks,
    approval_text,
    census_text,
    event_line,
    history_text,
    plan_text,
    progress_text,
    progress_title,
    read_step_output,
    result_text,
    self_update_census,
    step_output_text,
)

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = ROOT / "tests" / "snapshots"
FLEET = Inventory.model_validate(
    {
        "hosts": {f"web{i:02d}": {"address": f"10.0.0.{i}"} for i in range(1, 11)},
        "groups": {"web": [f"web{i:02d}" for i in range(1, 11)]},
    }
)


def matches_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(text + "\n", encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; run with UPDATE_SNAPSHOTS=1 once"
    assert text + "\n" == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["rolling-update", "canary"])
def test_plan_of_the_example_playbooks(name: str) -> None:
    playbook = load_playbook(ROOT / "playbooks" / f"{name}.yaml")
    plan = make_plan(playbook, FLEET.select(playbook.hosts), forks=10)
    matches_snapshot(f"plan-{name}.txt", plan_text(plan, playbook))


def test_result_summary_lists_hosts_by_state() -> None:
    hosts = {n: HostOutcome(n) for n in ("a", "b", "c", "d")}
    for name, path in {
        "a": [HostState.RUNNING, HostState.OK, HostState.ROLLING_BACK, HostState.ROLLED_BACK],
        "b": [HostState.RUNNING, HostState.FAILED, HostState.ROLLING_BACK, HostState.ROLLED_BACK],
    }.items():
        for state in path:
            hosts[name].move(state)
    result = RunResult(RunOutcome.FAILED, hosts, [1], "1 of 2 hosts failed in batch 1", 2.5)
    matches_snapshot("result-failed.txt", result_text(result))


def test_event_lines() -> None:
    lines = [
        event_line(StepDone("web01", "restart", "failed", "exit 1: boom")),
        event_line(StepDone("web01", "restart", "ok")),
        event_line(BatchDone(2, ("web03",), ("web04",))),
        event_line(HostRolledBack("web04", False, "switch back: exit 1")),
    ]
    assert lines == [
        "  web01: restart failed: exit 1: boom",
        None,
        "batch 2 done: 1 ok, 1 failed: web04",
        "  web04: ROLLBACK FAILED (switch back: exit 1)",
    ]


# ---- chat texts: the progress message, approvals, census, history -------------------------


def test_progress_grid_follows_the_events() -> None:
    board = Board.of(tuple(f"web{i:02d}" for i in range(1, 7)), batches=2)
    title = progress_title("deploy", "rolling-update", "troupe-a")
    board.apply(BatchStarted(1, ("web01", "web02", "web03")))
    board.apply(HostDone("web01", HostState.OK))
    board.apply(HostDone("web02", HostState.FAILED, "exit 1"))
    matches_snapshot("progress-running.txt", progress_text(title, board))
    board.apply(RollbackStarted(("web01", "web02"), "1 of 3 hosts failed"))
    board.apply(HostRolledBack("web01", True))
    board.apply(HostRolledBack("web02", False, "restore: exit 2"))
    assert board.counts() == {
        HostState.ROLLED_BACK: 1,
        HostState.ROLLBACK_FAILED: 1,
        HostState.RUNNING: 1,
        HostState.PENDING: 3,
    }
    matches_snapshot(
        "progress-finished.txt", progress_text(title, board, "failed; rollback incomplete")
    )


def test_approval_message_has_two_buttons_carrying_the_command() -> None:
    text = approval_text("approval step", ("approvers",), 1800)
    assert text.startswith(":raised_hand: *Approval needed* by someone with role approvers")
    assert "Aborts by itself in 30m" in text
    blocks = approval_blocks(text, "1800000000.000100")
    buttons = blocks[1]["elements"]
    assert [(b["action_id"], b["style"], b["value"]) for b in buttons] == [
        ("approve", "primary", "1800000000.000100"),
        ("abort", "danger", "1800000000.000100"),
    ]


def test_census_flags_a_mixed_fleet() -> None:
    mixed = census_text({"web01": "2.0.0", "web02": "1.9.0"}, {"a": "0.2.0 · abc1234"})
    matches_snapshot("census-mixed.txt", mixed)
    assert "set `chatops.census_command`" in census_text(None, {})


def test_history_lists_newest_first_with_how_to_roll_back() -> None:
    entries = [
        (
            "1800000100.000100",
            "U0ALICE",
            "deploy canary version=2.0.0",
            ":x:",
            "failed and rolled back in 3.0s",
        ),
        (
            "1800000000.000100",
            "U0BOB",
            "deploy rolling version=1.0.0",
            ":white_check_mark:",
            "succeeded in 9.1s",
        ),
    ]
    matches_snapshot("history.txt", history_text(entries))
    assert history_text([]) == "No deployments in this channel yet."


def test_self_update_census_reads_each_replicas_verdict_line() -> None:
    outputs = {
        "bot-a": "replica-a: 0.1.0 · 1a2b3c4 → 0.2.0 · 5d6e7f8 (healthy)",
        "bot-b": "replica-b: 0.1.0 · 1a2b3c4 → 0.2.0 · 5d6e7f8 (healthy)",
        "bot-c": "something else entirely",
    }
    text = self_update_census(outputs)
    assert text.startswith(
        ":bar_chart: *Census* after the self-update\nreplicas: :warning: *mixed*"
    )
    assert "replica-a      0.2.0 · 5d6e7f8" in text and "bot-c          something else" in text
    line = step_output_text("bot-a", outputs["bot-a"])
    assert read_step_output(line) == ("bot-a", outputs["bot-a"])
    assert read_step_output("bot-a: hello") is None
