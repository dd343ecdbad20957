"""Playbook, hosts and strategy -> Plan: the ordered phases of a rollout (pure).

A Plan is what `troupe plan` prints and what the executor runs: batches of hosts
(each host runs every task, then the `verify` checks), canary gates, pauses and
approvals. Nothing here touches a host.
"""

from __future__ import annotations

from dataclasses import dataclass

from troupe.inventory import Host
from troupe.playbooks import (
    ApproveStep,
    CheckStep,
    HostsStep,
    PauseStep,
    Playbook,
    Rolling,
)
from troupe.units import resolve_count


@dataclass(frozen=True)
class Batch:
    number: int  # 1-based, in rollout order
    hosts: tuple[str, ...]
    concurrency: int  # hosts worked on at once within the batch


@dataclass(frozen=True)
class Gate:
    """A canary analysis: run `check` on every host deployed so far."""

    check: str
    success: float  # percent passing needed for success
    failure: float  # percent failing above which it is a failure


@dataclass(frozen=True)
class Pause:
    seconds: float | None  # None: until a person approves


@dataclass(frozen=True)
class Approve:
    roles: tuple[str, ...]


Phase = Batch | Gate | Pause | Approve


@dataclass(frozen=True)
class Plan:
    playbook: str
    strategy: str  # "rolling" or "canary"
    hosts: tuple[str, ...]
    phases: tuple[Phase, ...]
    max_fail_percentage: float = 0.0
    failure_budget: int | None = None

    @property
    def batches(self) -> list[Batch]:
        return [p for p in self.phases if isinstance(p, Batch)]


def make_plan(playbook: Playbook, hosts: list[Host], forks: int = 10) -> Plan:
    names = tuple(h.name for h in hosts)
    strategy = playbook.strategy
    if strategy.canary is not None:
        return Plan(playbook.name, "canary", names, _canary(playbook, names, forks))
    rolling = strategy.rolling or Rolling()
    return Plan(
        playbook.name,
        "rolling",
        names,
        tuple(_rolling(rolling, names, forks)),
        max_fail_percentage=rolling.max_fail_percentage,
        failure_budget=rolling.failure_budget,
    )


def _rolling(rolling: Rolling, names: tuple[str, ...], forks: int) -> list[Batch]:
    """Ansible's `serial`: a list gives successive batch sizes, its last value repeating;
    percentages are of all the hosts."""
    sizes = rolling.serial if isinstance(rolling.serial, list) else [rolling.serial]
    batches: list[Batch] = []
    start = 0
    while start < len(names):
        size = resolve_count(sizes[min(len(batches), len(sizes) - 1)], len(names))
        chunk = names[start : start + size]
        batches.append(Batch(len(batches) + 1, chunk, _concurrency(rolling, chunk, names, forks)))
        start += size
    return batches


def _concurrency(
    rolling: Rolling, chunk: tuple[str, ...], names: tuple[str, ...], forks: int
) -> int:
    limit = len(chunk)
    if rolling.max_unavailable is not None:
        limit = min(limit, resolve_count(rolling.max_unavailable, len(names)))
    return max(1, min(limit, forks))


def _canary(playbook: Playbook, names: tuple[str, ...], forks: int) -> tuple[Phase, ...]:
    assert playbook.strategy.canary is not None
    phases: list[Phase] = []
    done = 0
    for step in playbook.strategy.canary.steps:
        if isinstance(step, HostsStep):
            target = resolve_count(step.hosts, len(names))
            if target > done:
                phases.append(_batch(phases, names[done:target], forks))
                done = target
        elif isinstance(step, CheckStep):
            phases.append(Gate(step.check, step.success, step.failure))
        elif isinstance(step, PauseStep):
            phases.append(Pause(None if step.pause == "until approved" else float(step.pause)))
        elif isinstance(step, ApproveStep):
            phases.append(Approve(tuple(step.approve.roles)))
    if done < len(names):
        # A canary always ends on every host: the last steps may stop short of 100%.
        phases.append(_batch(phases, names[done:], forks))
    return tuple(phases)


def _batch(phases: list[Phase], hosts: tuple[str, ...], forks: int) -> Batch:
    number = sum(isinstance(p, Batch) for p in phases) + 1
    return Batch(number, hosts, max(1, min(len(hosts), forks)))
