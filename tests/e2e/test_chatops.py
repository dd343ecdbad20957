"""The chat surface end to end (issue 5): people post commands, click buttons and react
through localslack with their own user tokens; real replica processes answer.

Roles in these fleets: alice and carol deploy, bob approves, mallory has no role; the
two-person rule is on. Hosts are local directories whose VERSION file is "the app".
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

import pytest

from tests.e2e.conftest import Harness
from tests.e2e.fleet import PEOPLE, Fleet, Person, Thread, poll

pytestmark = pytest.mark.integration  # real processes on loopback

CANARY = """\
name: canary
hosts: web
vars:
  version: {required: true, pattern: '^\\d+\\.\\d+\\.\\d+$'}
strategy:
  canary:
    steps:
      - hosts: 1
      - approve: {roles: [approvers]}
      - hosts: "100%"
capture:
  version: cat {{ host.vars.root }}/VERSION 2>/dev/null || echo none
tasks:
  - name: install
    run: >-
      echo install {{ host.name }} >> {{ host.vars.root }}/../../actions
      && echo {{ version }} > {{ host.vars.root }}/VERSION
rollback:
  - name: restore
    run: >-
      echo restore {{ host.name }} >> {{ host.vars.root }}/../../actions
      && echo {{ previous.version }} > {{ host.vars.root }}/VERSION
"""

ROLLING = """\
name: rolling
hosts: web
vars:
  version: {required: true, pattern: '^\\d+\\.\\d+\\.\\d+$'}
strategy: {rolling: {serial: 5}}
tasks:
  - name: install
    run: echo {{ version }} > {{ host.vars.root }}/VERSION
"""


def roles(on_locked: str = "refuse", approval_timeout: float = 60) -> dict[str, Any]:
    ids = {name: user_id for name, (user_id, _) in PEOPLE.items()}
    return {
        "auth": {
            "roles": {
                "deployers": [ids["alice"], ids["carol"]],
                "approvers": [ids["bob"], ids["alice"]],
            },
            "allow": [
                {
                    "actions": ["deploy", "rollback", "abort", "lock", "unlock"],
                    "roles": ["deployers"],
                },
                {"actions": ["approve"], "roles": ["approvers"]},
            ],
            "two_person": True,
        },
        "chatops": {
            "on_locked": on_locked,
            "approval_timeout": approval_timeout,
            "queue_timeout": 120,
            "progress_interval": 0.5,
            "poll_interval": 0.5,
            "census_command": "cat {{ host.vars.root }}/VERSION 2>/dev/null || echo none",
            "census_hosts": "web",
        },
        "playbooks": {"canary": CANARY, "rolling": ROLLING},
    }


def chatops_fleet(e2e: Harness, hosts: int = 4, **settings: Any) -> tuple[Fleet, Person]:
    return e2e.fleet(replicas=2, extra={"web_hosts": hosts, **roles(**settings)})


def versions(fleet: Fleet) -> dict[str, str]:
    out = {}
    for host in fleet.web_hosts:
        path = fleet.root / "hosts" / host / "VERSION"
        out[host] = path.read_text().strip() if path.exists() else "none"
    return out


def actions(fleet: Fleet) -> list[str]:
    path = fleet.root / "actions"
    return path.read_text().split("\n")[:-1] if path.exists() else []


def answer(fleet: Fleet, ts: str, pattern: str, timeout: float = 20) -> str:
    """The first reply in the thread matching `pattern`."""
    regex = re.compile(pattern, re.S)

    def found() -> str | None:
        return next((t for t in fleet.slack.thread(ts).texts() if regex.search(t)), None)

    return poll(found, timeout, f"a reply matching {pattern!r}", explain=lambda: dump(fleet, ts))


def dump(fleet: Fleet, ts: str) -> str:
    return fleet.slack.thread(ts).dump()


def approval_message(fleet: Fleet, ts: str) -> dict[str, Any]:
    def pending() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in fleet.slack.thread(ts).replies
                if m.get("blocks") and "Approval" in m["text"]
            ),
            None,
        )

    return poll(pending, 30, "the approval message with buttons", explain=lambda: dump(fleet, ts))


def done(fleet: Fleet, ts: str, timeout: float = 40) -> Thread:
    return fleet.wait_done([ts], timeout=timeout)[ts]


def reaction(thread: Thread) -> set[str]:
    return set(thread.reactions())


@pytest.mark.timeout(150)
def test_every_command_answers_and_bad_input_gets_help(e2e: Harness) -> None:
    fleet, alice = chatops_fleet(e2e)
    asks = {
        "help": alice.say("troupe help"),
        "help lock": alice.say("troupe help lock"),
        "typo": alice.say("troupe dpeloy canary version=1.0.0"),
        "usage": alice.say("troupe history many"),
        "quotes": alice.say('troupe lock web "unbalanced'),
        "approve": alice.say("troupe approve"),
        "status": alice.say("troupe status"),
        "history": alice.say("troupe history 5"),
        "census": alice.say("troupe census"),
        "unknown playbook": alice.say("troupe deploy nosuch"),
        "bad variable": alice.say("troupe deploy rolling version='1.0; touch pwned'"),
        "no such deployment": alice.say("troupe rollback 1700000000.000100"),
        "nothing to roll back": alice.say("troupe rollback"),
    }
    expected = {
        "help": r"Commands .*`deploy <playbook>.*`rollback \[<deployment>\]`.*`census`",
        "help lock": r"^`lock <env> \[reason\] \[for <duration>\]`",
        "typo": r"I don't know `dpeloy`\. Did you mean `deploy`\?",
        "usage": r"give at most one number\. Usage: `history \[n\]`",
        "quotes": r"unbalanced quotes",
        "approve": r"`approve` works in the thread of a deployment",
        "status": r"^(Nothing is running|Working on:\n(?!.*troupe status))",
        "history": r"No deployments|Last \d+ deployments",
        "census": r"\*Census\*\nhosts: all on none.*replicas: all on",
        "unknown playbook": r"no playbook named 'nosuch'",
        "bad variable": r"^:warning: .*version",
        "no such deployment": r"there is no message 1700000000\.000100 in this channel",
        "nothing to roll back": r"there is no finished deployment to roll back",
    }
    for name, ts in asks.items():
        answer(fleet, ts, expected[name])
    for name, ts in asks.items():
        thread = done(fleet, ts)
        assert len(thread.done_records) == 1, (name, thread.dump())
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "none")  # nothing ran
    fleet.wait_no_pins()


@pytest.mark.timeout(200)
def test_canary_approval_by_role_with_two_person_rule_then_history_and_rollback(
    e2e: Harness,
) -> None:
    fleet, alice = chatops_fleet(e2e, hosts=4)
    bob, mallory = alice.other("bob"), alice.other("mallory")

    # Unauthorized: mallory may not deploy; nothing runs.
    refused = mallory.say("troupe deploy canary version=2.0.0")
    answer(fleet, refused, rf"<@{mallory.user_id}> may not deploy canary on web")
    assert "x" in reaction(done(fleet, refused))

    # Alice's canary stops after one host for approval.
    ts = alice.say("troupe deploy canary to web01,web02,web03 version=2.0.0")
    approval = approval_message(fleet, ts)
    assert sorted(versions(fleet).values()) == ["2.0.0", "none", "none", "none"]

    # Meanwhile the census sees the mixed fleet, and both replicas (one of them busy).
    census = alice.say("troupe census")
    text = answer(fleet, census, r"\*Census\*")
    assert "hosts: :warning: *mixed*: 2 versions" in text, text
    assert "replica-1" in text and "replica-2" in text, text

    alice.click(approval["ts"], "approve")  # the requester: two-person rule
    answer(fleet, ts, r"asked for this deployment; someone else must approve")
    mallory.click(approval["ts"], "approve")  # no role
    answer(fleet, ts, rf"<@{mallory.user_id}> may not approve")
    mallory.react(approval["ts"], "+1")
    poll(
        lambda: (
            sum(
                f"<@{mallory.user_id}> may not approve" in t for t in fleet.slack.thread(ts).texts()
            )
            == 2
        ),
        20,
        "mallory's click and 👍 both refused",
        explain=lambda: dump(fleet, ts),
    )
    assert sorted(versions(fleet).values()) == ["2.0.0", "none", "none", "none"]

    bob.click(approval["ts"], "approve")
    thread = done(fleet, ts)
    assert "white_check_mark" in reaction(thread), thread.dump()
    assert versions(fleet) == {
        "web01": "2.0.0",
        "web02": "2.0.0",
        "web03": "2.0.0",
        "web04": "none",
    }
    progress = next(t for t in thread.texts() if t.startswith(":rocket: *deploy canary*"))
    assert "succeeded" in progress and "3 ok" in progress and "✓ web03" in progress, progress

    # History lists it; mallory may not roll it back; alice may, on exactly those hosts.
    listing = alice.say("troupe history")
    answer(fleet, listing, rf"`{re.escape(ts)}` <@{alice.user_id}> `deploy canary to web01,web02")
    denied = mallory.say(f"troupe rollback {ts}")
    answer(fleet, denied, rf"<@{mallory.user_id}> may not rollback canary on web")
    before = len(actions(fleet))
    back = alice.say("troupe rollback")
    thread = done(fleet, back)
    assert "white_check_mark" in reaction(thread), thread.dump()
    restored = sorted(a for a in actions(fleet)[before:])
    assert restored == ["restore web01", "restore web02", "restore web03"], restored
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "none")
    again = alice.say(f"troupe rollback {ts}")
    answer(fleet, again, r"already rolled back")
    fleet.wait_no_pins()


@pytest.mark.timeout(150)
def test_abort_reply_and_approval_timeout_leave_the_fleet_safe(e2e: Harness) -> None:
    fleet, alice = chatops_fleet(e2e, hosts=3, approval_timeout=4)
    carol = alice.other("carol")

    timed_out = alice.say("troupe deploy canary version=3.0.0")
    approval_message(fleet, timed_out)
    thread = done(fleet, timed_out, timeout=40)
    assert "x" in reaction(thread), thread.dump()
    assert any("no decision within 4s" in t for t in thread.texts()), thread.dump()
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "none")  # canary rolled back

    aborted = carol.say("troupe deploy canary version=3.0.1")
    approval_message(fleet, aborted)
    carol.say("troupe abort", thread_ts=aborted)
    thread = done(fleet, aborted)
    assert "x" in reaction(thread), thread.dump()
    assert any("aborted" in t for t in thread.texts()), thread.dump()
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "none")

    clicked = carol.say("troupe deploy canary version=3.0.2")  # the Abort button, by alice
    alice.click(approval_message(fleet, clicked)["ts"], "abort")
    thread = done(fleet, clicked)
    assert "x" in reaction(thread), thread.dump()
    assert any(f"aborted by <@{alice.user_id}>" in t for t in thread.texts()), thread.dump()
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "none")

    # on_locked: refuse (this fleet's setting): someone else's lock refuses the deploy.
    answer(fleet, carol.say("troupe lock web"), r"\*web\* is locked until unlocked")
    refused = alice.say("troupe deploy rolling version=3.1.0")
    answer(fleet, refused, r"^:warning: \*web\* is locked by <@U0E2ECAROL> until unlocked")
    own = carol.say("troupe deploy rolling version=3.1.1")  # the owner may
    assert "white_check_mark" in reaction(done(fleet, own)), dump(fleet, own)
    assert "x" in reaction(done(fleet, refused))
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "3.1.1")
    answer(fleet, carol.say("troupe unlock web"), r"\*web\* unlocked by <@U0E2ECAROL>")
    assert fleet.slack.pins() == []


@pytest.mark.timeout(150)
def test_locks_survive_a_restart_and_unlock_lets_a_queued_deploy_run(e2e: Harness) -> None:
    fleet, alice = chatops_fleet(e2e, hosts=2, on_locked="queue")
    carol, mallory = alice.other("carol"), alice.other("mallory")

    refused = mallory.say("troupe lock web")
    answer(fleet, refused, rf"<@{mallory.user_id}> may not lock")
    lock = carol.say("troupe lock web db migration for 1h")
    answer(fleet, lock, r"\*web\* is locked until .* \(db migration\)")
    pinned = set(fleet.slack.pins())
    locks = [
        t
        for ts, t in fleet.slack.threads().items()
        if "locked by <@U0E2ECAROL>" in t.parent["text"]
    ]
    assert len(locks) == 1 and locks[0].ts in pinned, (locks, pinned)
    fleet.stop()  # locks live in Slack: a fleet restarted from nothing still honours them
    fleet.start()

    queued = alice.say("troupe deploy rolling version=4.0.0")
    answer(fleet, queued, r"queued: \*web\* is locked by <@U0E2ECAROL>")
    status = alice.say("troupe status")
    answer(fleet, status, r"Locks:\n• :closed_lock_with_key: \*web\* is locked by <@U0E2ECAROL>")
    time.sleep(3)
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "none")  # still waiting

    carol.say("troupe unlock web")
    thread = done(fleet, queued, timeout=60)
    assert "white_check_mark" in reaction(thread), thread.dump()
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "4.0.0")
    fleet.wait_no_pins()


MESSAGE_BUDGET = 3  # posts besides one per batch: claim record, progress message, done record


@pytest.mark.timeout(150)
def test_a_20_host_rollout_stays_within_its_message_budget(e2e: Harness) -> None:
    fleet, alice = chatops_fleet(e2e, hosts=20)
    before = fleet.slack.calls()
    ts = alice.say("troupe deploy rolling version=5.0.0")
    thread = done(fleet, ts)
    after = fleet.slack.calls()

    def ok(method: str, calls: dict[str, dict[str, int]]) -> int:
        return calls.get(method, {}).get("ok", 0)

    posts = ok("chat.postMessage", after) - ok("chat.postMessage", before) - 1  # alice's
    updates = ok("chat.update", after) - ok("chat.update", before)
    batches = 4  # serial 5 over 20 hosts
    assert posts <= MESSAGE_BUDGET + batches, (posts, thread.dump())
    assert len(thread.replies) <= MESSAGE_BUDGET + batches, thread.dump()
    # Edits: the progress message at most once per progress_interval, plus heartbeats.
    assert updates <= 40, updates
    # Slack's ~1 message/s per channel: the deployment spaces its posts (post_interval).
    stamps = [float(m["ts"]) for m in thread.replies]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.95, gaps
    print(f"20 hosts, 4 batches: {posts} posts, {updates} edits, smallest gap {min(gaps):.2f}s")
    progress = next(
        (t for t in thread.texts() if t.startswith(":rocket: *deploy rolling*")), thread.dump()
    )
    assert "succeeded" in progress and "20 ok" in progress, progress
    assert all(f"✓ {h}" in progress for h in fleet.web_hosts), progress
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "5.0.0")
    fleet.wait_no_pins()


@pytest.mark.timeout(120)
def test_plan_posts_the_plan_and_runs_on_an_authorized_thumbs_up(e2e: Harness) -> None:
    fleet, alice = chatops_fleet(e2e, hosts=3)
    bob = alice.other("bob")
    ts = alice.say("troupe plan rolling version=6.0.0")
    approval = approval_message(fleet, ts)
    assert "Plan: rolling (rolling) on 3 hosts" in approval["text"], approval["text"]
    assert [e["action_id"] for e in approval["blocks"][1]["elements"]] == ["approve", "abort"]
    time.sleep(1)
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "none")  # a plan runs nothing yet

    bob.react(approval["ts"], "+1")
    thread = done(fleet, ts)
    assert "white_check_mark" in reaction(thread), thread.dump()
    assert versions(fleet) == dict.fromkeys(fleet.web_hosts, "6.0.0")
    closed = next(m for m in fleet.slack.thread(ts).replies if m["ts"] == approval["ts"])
    assert f"approve by <@{bob.user_id}> (reaction)" in closed["text"], closed
    assert not closed.get("blocks"), closed  # the buttons are gone
    fleet.wait_no_pins()
