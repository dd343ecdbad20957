"""What a run is doing and how it ended, as values (pure).

Host and run lifecycles are explicit enums with guarded transitions; events are
small frozen records that the terminal (report.py) and, later, Slack render.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class HostState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    ROLLING_BACK = "rolling back"
    ROLLED_BACK = "rolled back"
    ROLLBACK_FAILED = "rollback failed"
    INTERRUPTED = "interrupted"  # stopped between two steps; the rest was not run


_ALLOWED = {
    HostState.PENDING: {HostState.RUNNING},
    HostState.RUNNING: {HostState.OK, HostState.FAILED, HostState.INTERRUPTED},
    HostState.OK: {HostState.ROLLING_BACK},
    HostState.FAILED: {HostState.ROLLING_BACK},
    HostState.INTERRUPTED: {HostState.ROLLING_BACK},
    HostState.ROLLING_BACK: {HostState.ROLLED_BACK, HostState.ROLLBACK_FAILED},
    HostState.ROLLED_BACK: set(),
    HostState.ROLLBACK_FAILED: set(),
}


class TransitionError(RuntimeError):
    """A bug: the executor tried a lifecycle step that makes no sense."""


@dataclass
class HostOutcome:
    """Everything known about one host in one run."""

    name: str
    state: HostState = HostState.PENDING
    batch: int | None = None
    touched: bool = False  # a task ran (or started): rollback applies
    step: str | None = None  # the step that failed, if any
    error: str | None = None
    previous: dict[str, str] = field(default_factory=dict)  # captured before touching

    def move(self, to: HostState) -> None:
        if to not in _ALLOWED[self.state]:
            raise TransitionError(f"{self.name}: {self.state.value} -> {to.value}")
        self.state = to

    def fail(self, step: str, error: str) -> None:
        self.step, self.error = step, error
        self.move(HostState.FAILED)


class RunOutcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed and rolled back"
    ROLLBACK_INCOMPLETE = "failed; rollback incomplete"
    ABORTED = "aborted and rolled back"
    INTERRUPTED = "interrupted"
    REVERTED = "rolled back"  # a `rollback` command: an earlier deployment undone

    @property
    def exit_code(self) -> int:
        """Documented in docs/playbooks.md (2 is invalid input, raised before a run)."""
        return {
            RunOutcome.SUCCEEDED: 0,
            RunOutcome.FAILED: 1,
            RunOutcome.ROLLBACK_INCOMPLETE: 3,
            RunOutcome.ABORTED: 4,
            RunOutcome.INTERRUPTED: 130,
            RunOutcome.REVERTED: 0,
        }[self]


@dataclass
class RunResult:
    outcome: RunOutcome
    hosts: dict[str, HostOutcome]
    batches_done: list[int]
    reason: str = ""
    duration: float = 0.0

    def in_state(self, state: HostState) -> list[str]:
        return [h.name for h in self.hosts.values() if h.state == state]


# ---- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchStarted:
    number: int
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class StepDone:
    host: str
    step: str
    status: str  # "ok", "failed", "skipped", "retrying"
    detail: str = ""
    duration: float = 0.0


@dataclass(frozen=True)
class HostDone:
    host: str
    state: HostState
    error: str | None = None


@dataclass(frozen=True)
class CheckDone:
    check: str
    host: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class GateDone:
    check: str
    verdict: str  # "success", "failure", "inconclusive"
    passed: int
    failed: int


@dataclass(frozen=True)
class BatchDone:
    number: int
    ok: tuple[str, ...]
    failed: tuple[str, ...]


@dataclass(frozen=True)
class Paused:
    seconds: float | None  # None: until approved


@dataclass(frozen=True)
class ApprovalNeeded:
    reason: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class RollbackStarted:
    hosts: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class HostRolledBack:
    host: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class RunFinished:
    result: RunResult


Event = (
    BatchStarted
    | StepDone
    | HostDone
    | CheckDone
    | GateDone
    | BatchDone
    | Paused
    | ApprovalNeeded
    | RollbackStarted
    | HostRolledBack
    | RunFinished
)


# ---- the board: every host's state at a glance (what the progress message shows) ----------


@dataclass
class Board:
    """Folds events into the state of every host and the current batch."""

    hosts: dict[str, HostState]
    batches: int
    batch: int = 0
    note: str = ""  # what it is waiting for, if anything

    @classmethod
    def of(cls, hosts: tuple[str, ...], batches: int) -> Board:
        return cls(dict.fromkeys(hosts, HostState.PENDING), batches)

    def apply(self, event: Event) -> None:
        if isinstance(event, BatchStarted):
            self.batch, self.note = event.number, ""
            self.hosts |= dict.fromkeys(event.hosts, HostState.RUNNING)
        elif isinstance(event, HostDone | HostRolledBack):
            self.hosts[event.host] = _board_state(event)
        elif isinstance(event, RollbackStarted):
            self.hosts |= dict.fromkeys(event.hosts, HostState.ROLLING_BACK)
            self.note = "rolling back"
        elif isinstance(event, Paused | ApprovalNeeded):
            self.note = "waiting for approval" if _needs_person(event) else "paused"
        elif isinstance(event, RunFinished):
            self.hosts |= {n: o.state for n, o in event.result.hosts.items()}
            self.note = ""

    def mark_done(self, hosts: list[str]) -> None:
        """Hosts an earlier owner finished (from the journal)."""
        self.hosts |= dict.fromkeys(hosts, HostState.OK)

    def counts(self) -> dict[HostState, int]:
        counts: dict[HostState, int] = {}
        for state in self.hosts.values():
            counts[state] = counts.get(state, 0) + 1
        return counts


def _board_state(event: HostDone | HostRolledBack) -> HostState:
    if isinstance(event, HostDone):
        return event.state
    return HostState.ROLLED_BACK if event.ok else HostState.ROLLBACK_FAILED


def _needs_person(event: Paused | ApprovalNeeded) -> bool:
    return isinstance(event, ApprovalNeeded) or event.seconds is None
