"""troupe.auth: roles, rules per action / playbook / environment, two-person rule (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from troupe.auth import Auth, approval_refusal, refusal

AUTH = Auth.model_validate(
    {
        "roles": {
            "deployers": ["U0ALICE", "U0CAROL"],
            "approvers": ["U0BOB", "U0ALICE"],
            "db": ["U0DAVE"],
        },
        "allow": [
            {"actions": ["deploy", "rollback", "abort"], "roles": ["deployers"], "envs": ["web*"]},
            {"actions": ["deploy"], "roles": ["db"], "playbooks": ["migrate"], "envs": ["db"]},
            {"actions": ["approve"], "roles": ["approvers"]},
            {"actions": ["lock", "unlock"], "roles": ["deployers", "approvers"]},
        ],
        "two_person": True,
    }
)


@pytest.mark.parametrize(
    ("user", "action", "playbook", "env", "allowed"),
    [
        ("U0ALICE", "deploy", "canary", "web", True),
        ("U0ALICE", "deploy", "canary", "web-eu", True),  # glob
        ("U0ALICE", "deploy", "canary", "db", False),  # not her environment
        ("U0DAVE", "deploy", "migrate", "db", True),
        ("U0DAVE", "deploy", "canary", "db", False),  # only that playbook
        ("U0BOB", "deploy", "canary", "web", False),
        ("U0BOB", "lock", None, "db", True),
        ("U0MALLORY", "lock", None, "web", False),
        ("U0MALLORY", "self-update", None, None, False),
    ],
)
def test_refusal(
    user: str, action: str, playbook: str | None, env: str | None, allowed: bool
) -> None:
    reason = refusal(AUTH, user, action, playbook, env)
    assert (reason is None) == allowed, reason
    if reason:
        assert reason.startswith(f"<@{user}> may not {action}")


def test_a_refusal_names_the_roles_needed_and_held() -> None:
    reason = refusal(AUTH, "U0BOB", "deploy", "canary", "web")
    assert reason == (
        "<@U0BOB> may not deploy canary on web (needs one of: deployers; your roles: approvers)"
    )
    assert "you have no role" in (refusal(AUTH, "U0EVE", "deploy", "x", "web") or "")
    assert "nobody is allowed to" in (refusal(AUTH, "U0BOB", "self-update") or "")


def test_without_an_auth_section_everyone_may_do_everything() -> None:
    assert refusal(None, "U0ANYONE", "deploy", "canary", "prod") is None
    assert approval_refusal(None, "U0ANYONE", "U0ANYONE", ("approvers",), "canary", "web") is None


def test_approvals_two_person_rule_and_step_roles() -> None:
    assert approval_refusal(AUTH, "U0BOB", "U0ALICE", (), "canary", "web") is None
    own = approval_refusal(AUTH, "U0ALICE", "U0ALICE", (), "canary", "web")
    assert own is not None and "two-person rule" in own
    assert approval_refusal(AUTH, "U0CAROL", "U0ALICE", (), "canary", "web") is not None
    step = approval_refusal(AUTH, "U0BOB", "U0CAROL", ("deployers",), "canary", "web")
    assert step == "<@U0BOB> may not approve this step (needs one of: deployers)"
    relaxed = AUTH.model_copy(update={"two_person": False})
    assert approval_refusal(relaxed, "U0ALICE", "U0ALICE", (), "canary", "web") is None


def test_rules_must_name_defined_roles() -> None:
    with pytest.raises(ValidationError, match=r"allow\[0\] names roles that are not defined"):
        Auth.model_validate({"roles": {}, "allow": [{"actions": ["deploy"], "roles": ["ops"]}]})
    with pytest.raises(ValidationError, match="pattern"):
        Auth.model_validate({"roles": {"ops": ["alice"]}})  # a name, not a Slack user ID
