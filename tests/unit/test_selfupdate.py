"""The pure parts of self-update: what an idempotent run does next, which files mean a
dependency change, version labels, and the supervisor's restart backoff."""

from __future__ import annotations

import pytest

from troupe.selfupdate import DEPENDENCY_FILES, Verdict, decide
from troupe.supervisor import backoff
from troupe.version import UNKNOWN, Version

OLD, NEW = "a" * 40, "b" * 40


def verdict(state: str, target: str = NEW) -> Verdict:
    return Verdict("r1", target, OLD, state)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("head", "running", "seen", "force", "action"),
    [
        (OLD, OLD, None, False, "update"),  # the first run
        (NEW, OLD, verdict("running"), False, "wait"),  # a replica that took over
        (NEW, NEW, verdict("healthy"), False, "done"),  # asked again after success
        (OLD, OLD, verdict("reverted"), False, "reverted"),  # the same failure, at once
        (OLD, OLD, verdict("reverted"), True, "update"),  # --force tries again
        (NEW, OLD, None, False, "restart"),  # switched, but never restarted (killed)
        (NEW, None, None, False, "restart"),  # no supervisor: restart says so
        (OLD, OLD, verdict("healthy", target="c" * 40), False, "update"),  # older verdict
    ],
)
def test_decide(
    head: str, running: str | None, seen: Verdict | None, force: bool, action: str
) -> None:
    assert decide(head, NEW, running, seen, force) == action


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("pyproject.toml", True),
        ("requirements.txt", True),
        ("requirements-dev.txt", True),
        ("uv.lock", True),
        ("sub/poetry.lock", True),
        ("setup.cfg", True),
        ("troupe/__init__.py", False),
        ("docs/pyproject.toml.md", False),
        ("requirements/readme.md", False),
    ],
)
def test_dependency_files(name: str, changes: bool) -> None:
    assert bool(DEPENDENCY_FILES.search(name)) is changes


def test_version_labels() -> None:
    assert Version("0.2.0", NEW, "v0.2.0").label == "0.2.0 · bbbbbbb · v0.2.0"
    assert Version("0.2.0", NEW).label == "0.2.0 · bbbbbbb"
    assert Version("0.2.0", UNKNOWN).label == "0.2.0 · unknown"


def test_backoff_doubles_up_to_thirty_seconds() -> None:
    assert [backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
