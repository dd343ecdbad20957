"""Who may do what (pure): roles of Slack user IDs, and rules per action, playbook and
environment. Configured in troupe.yaml's `auth` section (docs/chatops.md).

Users are named by ID, never by name: Slack display names can be changed by anyone.
With no `auth` section everyone in the channel may do everything (the sandbox); a
replica says so when it starts.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from troupe.commands import ACTIONS

UserId = Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,}$")]
Action = Literal["deploy", "approve", "abort", "rollback", "lock", "unlock", "self-update", "*"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(_Section):
    """Members of `roles` may do `actions` with `playbooks` on `envs` (globs; * = any)."""

    actions: list[Action]
    roles: list[str]
    playbooks: list[str] = ["*"]
    envs: list[str] = ["*"]

    def covers(self, action: str, playbook: str | None, env: str | None) -> bool:
        return (
            ("*" in self.actions or action in self.actions)
            and _matches(self.playbooks, playbook)
            and _matches(self.envs, env)
        )


class Auth(_Section):
    roles: dict[str, list[UserId]] = {}
    allow: list[Rule] = []
    two_person: bool = False  # an approver must not be the person who asked

    @model_validator(mode="after")
    def _known_roles(self) -> Auth:
        for i, rule in enumerate(self.allow):
            unknown = sorted(set(rule.roles) - set(self.roles))
            if unknown:
                raise ValueError(f"allow[{i}] names roles that are not defined: {unknown}")
        return self

    def roles_of(self, user: str) -> set[str]:
        return {role for role, members in self.roles.items() if user in members}


def _matches(patterns: list[str], value: str | None) -> bool:
    """A rule limited to some playbooks or envs covers only those; `*` covers none too."""
    if "*" in patterns:
        return True
    return value is not None and any(fnmatchcase(value, p) for p in patterns)


def refusal(
    auth: Auth | None,
    user: str,
    action: str,
    playbook: str | None = None,
    env: str | None = None,
) -> str | None:
    """Why `user` may not do `action` (None: allowed)."""
    assert action in ACTIONS, action  # a typo here would silently allow or refuse
    if auth is None:
        return None
    roles = auth.roles_of(user)
    if any(rule.covers(action, playbook, env) and roles & set(rule.roles) for rule in auth.allow):
        return None
    what = " ".join(x for x in (action, playbook, f"on {env}" if env else "") if x)
    held = f"your roles: {', '.join(sorted(roles))}" if roles else "you have no role"
    needed = sorted(
        {r for rule in auth.allow if rule.covers(action, playbook, env) for r in rule.roles}
    )
    need = f"needs one of: {', '.join(needed)}" if needed else "nobody is allowed to"
    return f"<@{user}> may not {what} ({need}; {held})"


def approval_refusal(
    auth: Auth | None,
    user: str,
    requester: str,
    step_roles: tuple[str, ...],
    playbook: str,
    env: str | None,
) -> str | None:
    """Why `user` may not approve a step of `requester`'s deployment (None: allowed).
    The step's own roles (`approve: {roles: [...]}`) narrow who may, on top of the rules."""
    refused = refusal(auth, user, "approve", playbook, env)
    if refused:
        return refused
    if auth is not None and auth.two_person and user == requester:
        return f"<@{user}> asked for this deployment; someone else must approve (two-person rule)"
    if auth is not None and step_roles and not auth.roles_of(user) & set(step_roles):
        return f"<@{user}> may not approve this step (needs one of: {', '.join(step_roles)})"
    return None
