"""troupe.planner: batches, canary phases, concurrency (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from troupe.inventory import Host
from troupe.planner import Approve, Batch, Gate, Pause, make_plan
from troupe.playbooks import Playbook


def hosts(n: int) -> list[Host]:
    return [
        Host(
            name=f"h{i:02d}",
            connection="local",
            address="127.0.0.1",
            port=22,
            user=None,
            key_file=None,
            connect_timeout=1.0,
        )
        for i in range(1, n + 1)
    ]


def playbook(strategy: dict[str, Any], **extra: Any) -> Playbook:
    return Playbook.model_validate(
        {"name": "p", "tasks": [{"run": "true"}], "strategy": strategy, **extra}
    )


def sizes(plan_phases: tuple[Any, ...]) -> list[int]:
    return [len(p.hosts) for p in plan_phases if isinstance(p, Batch)]


@pytest.mark.parametrize(
    ("serial", "n", "expected"),
    [
        (3, 10, [3, 3, 3, 1]),
        ("25%", 10, [3, 3, 3, 1]),  # 2.5 rounds up
        ([1, "25%", "100%"], 10, [1, 3, 6]),
        ([1, 2], 7, [1, 2, 2, 2]),  # the last size repeats
        ("100%", 4, [4]),
        (50, 4, [4]),
    ],
)
def test_rolling_serial(serial: Any, n: int, expected: list[int]) -> None:
    plan = make_plan(playbook({"rolling": {"serial": serial}}), hosts(n))
    assert sizes(plan.phases) == expected
    assert [h for b in plan.batches for h in b.hosts] == [h.name for h in hosts(n)]
    assert [b.number for b in plan.batches] == list(range(1, len(expected) + 1))


def test_max_unavailable_and_forks_bound_concurrency() -> None:
    plan = make_plan(
        playbook({"rolling": {"serial": 5, "max_unavailable": 2}}), hosts(10), forks=10
    )
    assert [b.concurrency for b in plan.batches] == [2, 2]
    narrow = make_plan(playbook({"rolling": {"serial": 5}}), hosts(10), forks=3)
    assert [b.concurrency for b in narrow.batches] == [3, 3]


def test_failure_policy_is_carried_into_the_plan() -> None:
    plan = make_plan(
        playbook({"rolling": {"max_fail_percentage": "20%", "failure_budget": 2}}), hosts(3)
    )
    assert (plan.max_fail_percentage, plan.failure_budget) == (20.0, 2)


def test_canary_phases_in_order_and_always_ends_everywhere() -> None:
    book = playbook(
        {
            "canary": {
                "steps": [
                    {"hosts": 1},
                    {"check": "up", "success": "90%", "failure": "10%"},
                    {"pause": "30s"},
                    {"approve": {"roles": ["deployers"]}},
                    {"hosts": "50%"},
                    {"pause": "until approved"},
                ]
            }
        },
        checks={"up": {"command": "true"}},
    )
    plan = make_plan(book, hosts(10))
    assert plan.strategy == "canary"
    assert plan.phases == (
        Batch(1, ("h01",), 1),
        Gate("up", 90.0, 10.0),
        Pause(30.0),
        Approve(("deployers",)),
        Batch(2, ("h02", "h03", "h04", "h05"), 4),
        Pause(None),
        Batch(3, ("h06", "h07", "h08", "h09", "h10"), 5),  # implicit: the rest
    )


def test_canary_step_already_covered_adds_no_empty_batch() -> None:
    book = playbook({"canary": {"steps": [{"hosts": "50%"}, {"hosts": 1}, {"hosts": "100%"}]}})
    assert sizes(make_plan(book, hosts(4)).phases) == [2, 2]
