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
    HostOutcome,
    HostRolledBack,
    HostState,
    RunOutcome,
    RunResult,
    StepDone,
)
from troupe.report import event_line, plan_text, result_text

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
