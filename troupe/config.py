"""troupe.yaml: the settings of a replica and its inventory (pure, apart from reading it).

Precedence, lowest first: built-in defaults < troupe.yaml < TROUPE_* environment
variables < flags. This module is the only one that reads the environment. Secrets
(tokens, the signing secret) come from the environment only, never from the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from troupe.auth import Auth
from troupe.errors import InputError
from troupe.inventory import Inventory
from troupe.units import Duration
from troupe.yamlfile import load_model

DEFAULT_PATH = Path("troupe.yaml")
SLACK_API = "https://slack.com/api/"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Execution(_Section):
    forks: Annotated[int, Field(ge=1, le=500)] = 10  # hosts worked on at once, at most
    playbooks_dir: str = "playbooks"


class LeaseSettings(_Section):
    seconds: Duration = 30.0
    heartbeat: Duration = 10.0
    settle: Duration = 0.5
    orphan_grace: Duration = 30.0

    @model_validator(mode="after")
    def _ordered(self) -> LeaseSettings:
        if not 0 < self.settle < self.heartbeat < self.seconds:
            raise ValueError("needs 0 < settle < heartbeat < seconds (renew well within the lease)")
        return self


class HttpListener(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 3000
    path: str = "/slack/events"


class SlackSettings(_Section):
    channel: Annotated[str, Field(pattern=r"^C[A-Z0-9]{8,}$")] | None = None
    api_url: str = SLACK_API  # point at localslack: http://127.0.0.1:8310/api/
    delivery: Literal["socket", "http"] = "socket"
    http: HttpListener = HttpListener()
    prefix: str | None = None  # e.g. "troupe": commands may start with it instead of a mention
    fleet: list[
        Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,}$")]
    ] = []  # every replica's bot user
    lease: LeaseSettings = LeaseSettings()
    sweep_interval: Duration = 15.0
    sweep_window: Duration = 3600.0  # how far back the sweeper looks for commands


class HealthSettings(_Section):
    """Where `troupe run` serves /healthz and /metrics (troupe.health)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: a free port, logged at start


class ChatOps(_Section):
    """How the chat surface behaves (docs/chatops.md)."""

    approval_timeout: Duration = 1800.0  # a pending approval then aborts (and rolls back)
    on_locked: Literal["refuse", "queue"] = "refuse"  # a deploy to someone else's lock
    queue_timeout: Duration = 3600.0  # how long a queued deploy waits for the unlock
    progress_interval: Duration = 2.0  # the progress message is edited at most this often
    poll_interval: Duration = 2.0  # a running deployment reads its thread for decisions
    post_interval: Duration = 1.0  # at least this between a deployment's thread posts
    # `census`: a read-only command printing the version on a host (rendered per host).
    census_command: str | None = None
    census_hosts: str = "all"


class SelfUpdateSettings(_Section):
    """How a replica updates itself (troupe.selfupdate, troupe.supervisor)."""

    remote: str = "origin"  # fetched before every update
    ref: str = "origin/main"  # the target when none is given
    probation: Duration = 60.0  # a new version must report healthy within this
    require_signed_tag: bool = False  # only update to a tag that `git verify-tag` accepts
    stop_timeout: Duration = 60.0  # how long the old version may take to hand over


class Config(_Section):
    inventory: Inventory = Inventory()
    execution: Execution = Execution()
    slack: SlackSettings = SlackSettings()
    selfupdate: SelfUpdateSettings = SelfUpdateSettings()
    auth: Auth | None = None  # None: everyone in the channel may do everything
    chatops: ChatOps = ChatOps()
    health: HealthSettings = HealthSettings()


class Secrets(_Section):
    """From the environment: TROUPE_BOT_TOKEN, TROUPE_APP_TOKEN, TROUPE_SIGNING_SECRET."""

    bot_token: SecretStr
    app_token: SecretStr | None = None
    signing_secret: SecretStr | None = None


def load_config(path: str | Path = DEFAULT_PATH, env: Mapping[str, str] | None = None) -> Config:
    """troupe.yaml with TROUPE_SLACK_API_URL / TROUPE_SLACK_CHANNEL / TROUPE_HEALTH_PORT
    applied on top."""
    config = load_model(path, Config)
    env = os.environ if env is None else env
    overrides = {
        "api_url": env.get("TROUPE_SLACK_API_URL"),
        "channel": env.get("TROUPE_SLACK_CHANNEL"),
    }
    overrides = {k: v for k, v in overrides.items() if v}
    if env.get("TROUPE_HEALTH_PORT"):
        config = with_health_port(config, env["TROUPE_HEALTH_PORT"])
    if not overrides:
        return config
    slack = SlackSettings.model_validate(config.slack.model_dump() | overrides)
    return config.model_copy(update={"slack": slack})


def with_health_port(config: Config, port: int | str) -> Config:
    """`health.port` from TROUPE_HEALTH_PORT or --health-port; a bad value is an InputError."""
    try:
        health = HealthSettings.model_validate(config.health.model_dump() | {"port": port})
    except ValueError:
        raise InputError(f"health port must be a number from 0 to 65535, not {port!r}") from None
    return config.model_copy(update={"health": health})


def load_secrets(delivery: str, env: Mapping[str, str] | None = None) -> Secrets:
    """The replica's tokens; says which variable is missing, never prints a value."""
    env = os.environ if env is None else env
    needed = ["TROUPE_BOT_TOKEN"]
    needed.append("TROUPE_APP_TOKEN" if delivery == "socket" else "TROUPE_SIGNING_SECRET")
    missing = [name for name in needed if not env.get(name)]
    if missing:
        raise InputError(f"set {' and '.join(missing)} in the environment ({delivery} delivery)")
    return Secrets(
        bot_token=SecretStr(env["TROUPE_BOT_TOKEN"]),
        app_token=SecretStr(env["TROUPE_APP_TOKEN"]) if env.get("TROUPE_APP_TOKEN") else None,
        signing_secret=(
            SecretStr(env["TROUPE_SIGNING_SECRET"]) if env.get("TROUPE_SIGNING_SECRET") else None
        ),
    )
