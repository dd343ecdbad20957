"""Exactly once, across the whole fleet: many commands, every one run on every host once."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Harness
from tests.e2e.fleet import assert_all_succeeded

pytestmark = pytest.mark.integration  # real processes on loopback

N = 100


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("replicas", "shared"), [(5, False), (3, True)], ids=["apps", "shared"])
def test_many_deploys_run_exactly_once(e2e: Harness, replicas: int, shared: bool) -> None:
    """100 deploys posted back to back, to 5 replicas with one app each (every replica
    sees every command and races for it) and to 3 replicas sharing one app (each command
    reaches one replica; the sweepers find the rest). Each command's id lands once in each
    host's ledger; each command ends with one done record and ✅; no pin is left.
    (About 15 s each here: no need to scale the issue's 100 down.)"""
    fleet, alice = e2e.fleet(replicas=replicas, shared=shared)
    ids = [f"c{i:03d}" for i in range(N)]
    commands = [alice.deploy("ledger", i) for i in ids]
    done = fleet.wait_done(commands, timeout=200)
    fleet.wait_no_pins()
    fleet.assert_exactly_once(ids, fleet.ledger_hosts)
    assert_all_succeeded(done, fleet.bot_users)
