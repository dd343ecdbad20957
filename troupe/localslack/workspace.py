"""The workspace file: who and what exists in a localslack workspace (pure).

The shape is a contract shared with tests, the sandbox and docs/localslack.md::

    team: {id: T0TROUPE, name: troupe-dev}
    users:    [{id: U0ALICE, name: alice, token: xoxp-alice}]
    channels: [{id: C0OPS00001, name: ops, members: [U0ALICE, U0TROUPEA]}]
    apps:     [{id: A0TROUPEA, name: troupe-a, bot_user_id: U0TROUPEA, bot_token: xoxb-...,
                app_token: xapp-..., signing_secret: ..., delivery: socket}]

IDs must match the patterns of Slack's OpenAPI spec, so code tested against
localslack never meets an ID shape that real Slack would not produce.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from troupe.yamlfile import load_model

# Patterns from Slack's OpenAPI spec (defs_team, defs_user_id, defs_channel, defs_app_id, ...).
TeamId = Annotated[str, Field(pattern=r"^T[A-Z0-9]{2,}$")]
UserId = Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,}$")]
ChannelId = Annotated[str, Field(pattern=r"^C[A-Z0-9]{8,}$")]
AppId = Annotated[str, Field(pattern=r"^A[A-Z0-9]{1,}$")]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,79}$")]
Secret = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Team(_Model):
    id: TeamId
    name: Name
    domain: str | None = None

    @property
    def url(self) -> str:
        return f"https://{self.domain or self.name}.slack.com/"


class User(_Model):
    id: UserId
    name: Name
    token: Annotated[str, Field(pattern=r"^xoxp-\S+$")]
    real_name: str | None = None


class Channel(_Model):
    id: ChannelId
    name: Name
    members: list[UserId] = []
    topic: str = ""
    purpose: str = ""


class HttpDelivery(_Model):
    """Events API over HTTP: events and interactivity are POSTed to this URL."""

    http: HttpUrl


class App(_Model):
    id: AppId
    name: Name
    bot_user_id: UserId
    bot_token: Annotated[str, Field(pattern=r"^xoxb-\S+$")]
    app_token: Annotated[str, Field(pattern=r"^xapp-\S+$")]
    signing_secret: Secret
    delivery: Literal["socket"] | HttpDelivery = "socket"

    @property
    def bot_id(self) -> str:
        """A stable `B…` bot ID derived from the app ID (Slack's pattern: B and 8+ chars)."""
        digest = hashlib.sha256(self.id.encode()).digest()
        return "B" + base64.b32encode(digest).decode()[:10]

    @property
    def http_url(self) -> str | None:
        return str(self.delivery.http) if isinstance(self.delivery, HttpDelivery) else None


class Workspace(_Model):
    team: Team
    users: list[User] = []
    channels: list[Channel] = []
    apps: list[App] = []

    @model_validator(mode="after")
    def _consistent(self) -> Workspace:
        people = [u.id for u in self.users] + [a.bot_user_id for a in self.apps]
        _unique("user IDs (people and bot users)", people)
        _unique("channel IDs", [c.id for c in self.channels])
        _unique("channel names", [c.name for c in self.channels])
        _unique("app IDs", [a.id for a in self.apps])
        tokens = [u.token for u in self.users]
        tokens += [t for a in self.apps for t in (a.bot_token, a.app_token)]
        _unique("tokens", tokens)
        known = set(people)
        for channel in self.channels:
            unknown = sorted(set(channel.members) - known)
            if unknown:
                raise ValueError(f"channel #{channel.name} lists unknown members {unknown}")
        return self

    def app_by_bot_user(self, user_id: str) -> App | None:
        return next((a for a in self.apps if a.bot_user_id == user_id), None)

    def user(self, user_id: str) -> User | None:
        return next((u for u in self.users if u.id == user_id), None)


def _unique(what: str, values: list[str]) -> None:
    dupes = sorted(v for v, n in Counter(values).items() if n > 1)
    if dupes:
        raise ValueError(f"{what} must be unique; repeated: {dupes}")


def load_workspace(path: str | Path) -> Workspace:
    """Read and validate a workspace file (raises FileFormatError naming file, line, field)."""
    return load_model(path, Workspace)


def default_workspace(replicas: str = "abc") -> Workspace:
    """One person, #ops, and a Socket Mode app per letter of `replicas` (troupe-a, ...):
    the default three make a three-replica fleet; tests and benchmarks ask for more."""
    apps = [
        App(
            id=f"A0TROUPE{x.upper()}",
            name=f"troupe-{x}",
            bot_user_id=f"U0TROUPE{x.upper()}",
            bot_token=f"xoxb-troupe-{x}",
            app_token=f"xapp-troupe-{x}",
            signing_secret=f"s3cr3t-{x}",
        )
        for x in replicas
    ]
    return Workspace(
        team=Team(id="T0TROUPE", name="troupe-dev"),
        users=[User(id="U0ALICE", name="alice", token="xoxp-alice", real_name="Alice")],  # noqa: S106
        channels=[
            Channel(
                id="C0OPS00001",
                name="ops",
                members=["U0ALICE", *(a.bot_user_id for a in apps)],
                purpose="Deployments",
            )
        ],
        apps=apps,
    )
