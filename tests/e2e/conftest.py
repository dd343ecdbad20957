"""The `e2e` fixture: start localslack and fleets as real processes; stop them all after.

When a test fails, the tail of every replica's log and of localslack's output is added to
its report (the processes' output goes to files in the test's temporary directory).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet import Fleet, LocalSlack, Person, Timings, identities


class Harness:
    """Everything one test started, in order, so that teardown can stop it all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fleets: list[Fleet] = []
        self.servers: list[LocalSlack] = []

    def fleet(
        self,
        replicas: int = 3,
        shared: bool = False,
        slack_flags: Iterable[str] = ("--rate-limits", "off"),
        ledger_hosts: int = 2,
        slow_hosts: int = 4,
        timings: Timings | None = None,
        start: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Fleet, Person]:
        """localslack (its own workspace) and `replicas` replicas named replica-1..N."""
        root = self.workdir / f"fleet{len(self.fleets) + 1}"
        root.mkdir()
        who = identities([f"replica-{i}" for i in range(1, replicas + 1)], shared)
        slack = LocalSlack(root, who.values(), slack_flags)
        self.servers.append(slack)
        slack.start()
        fleet = Fleet(root, slack, who, ledger_hosts, slow_hosts, timings or Timings(), extra)
        self.fleets.append(fleet)
        if start:
            fleet.start()
        return fleet, Person(slack.api_url)

    def logs(self) -> str:
        return "\n".join(f.logs() for f in self.fleets)

    def stop(self) -> None:
        for fleet in self.fleets:
            fleet.stop()
        for server in self.servers:
            server.stop()


HARNESS = pytest.StashKey[Harness]()


@pytest.fixture
def e2e(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    request.node.stash[HARNESS] = harness
    try:
        yield harness
    finally:
        harness.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    harness = item.stash.get(HARNESS, None)
    if harness is not None and report.when == "call" and report.failed:
        report.sections.append(("e2e fleet logs", harness.logs()))
    return report
