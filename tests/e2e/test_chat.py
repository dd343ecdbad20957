"""Fleet-wide and refused commands, in both delivery topologies: `roll call` is answered
by every replica once; a command nobody knows gets one reply."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from tests.e2e.conftest import Harness
from tests.e2e.fleet import Thread, poll

pytestmark = pytest.mark.integration  # real processes on loopback

ROLL_CALL = re.compile(r"^:raising_hand: \*(?P<name>[^*]+)\* here · version .+ · (idle|busy)")
RECORDS = re.compile(r"^:(lock|zzz|white_check_mark|x): ")  # the claim protocol's own


def answers(thread: Thread) -> Counter[str]:
    return Counter(m["name"] for t in thread.texts() if (m := ROLL_CALL.match(t)))


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("replicas", "shared"), [(5, False), (3, True)], ids=["apps", "shared"])
def test_roll_call_answered_by_every_replica_and_unknown_command_once(
    e2e: Harness, replicas: int, shared: bool
) -> None:
    fleet, alice = e2e.fleet(replicas=replicas, shared=shared)
    roll_call = alice.say("troupe roll call")
    unknown = alice.say("troupe frobnicate the widgets")
    names = set(fleet.replicas)

    poll(
        lambda: set(answers(fleet.slack.thread(roll_call))) == names,
        30,
        f"every replica ({sorted(names)}) to answer the roll call",
        explain=lambda: fleet.slack.thread(roll_call).dump(),
    )
    fleet.wait_done([unknown], timeout=30)
    time.sleep(3 * fleet.timings.sweep_interval)  # sweeps and redeliveries had their chance

    roll = fleet.slack.thread(roll_call)
    assert answers(roll) == Counter(names), roll.dump()
    assert len(roll.replies) == len(names), roll.dump()

    refused = fleet.slack.thread(unknown)
    replies = [t for t in refused.texts() if not RECORDS.match(t)]
    assert len(replies) == 1, refused.dump()
    assert replies[0].startswith(":warning: I don't know `frobnicate`"), refused.dump()
    assert len(refused.done_records) == 1 and "x" in refused.reactions(), refused.dump()
    fleet.wait_no_pins()
