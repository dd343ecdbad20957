"""Playbooks: YAML -> a validated, frozen Playbook (pure apart from reading the file).

The format is documented in docs/playbooks.md and exported as JSON Schema by
`troupe schema playbook`. Errors name file, line and field (troupe.yamlfile).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from troupe.errors import InputError
from troupe.units import Duration, HostCount, Percent
from troupe.yamlfile import Within, load_model

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Variable(_Model):
    """A declared variable: values given at run time are checked against it."""

    required: bool = False
    default: str | int | float | bool | None = None
    pattern: str | None = None
    choices: list[str | int | float | bool] | None = None
    description: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Variable:
        if self.required and self.default is not None:
            raise ValueError("a required variable cannot have a default")
        if self.default is not None:
            self.check(self.default)
        return self

    def check(self, value: object) -> None:
        """Raise ValueError if `value` is not allowed for this variable."""
        # Values from -e or chat are strings: compare as text, so `choices: [1, 2]` takes "2".
        if self.choices is not None and str(value) not in {str(c) for c in self.choices}:
            raise ValueError(f"must be one of {self.choices}, not {value!r}")
        if self.pattern is not None and not re.search(self.pattern, str(value)):
            raise ValueError(f"must match {self.pattern!r}, not {value!r}")


class Put(_Model):
    src: str
    dest: str
    mode: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")] | None = None


class Task(_Model):
    """One step on a host: a shell command (`run`) or a file upload (`put`)."""

    name: str = ""
    run: str | None = None
    put: Put | None = None
    sudo: bool = False
    timeout: Duration = 300.0
    retries: Annotated[int, Field(ge=0, le=100)] = 0
    retry_delay: Duration = 1.0
    when: str | None = None  # a Jinja2 expression, e.g. "env == 'production'"
    report: bool = False  # in chat, post this step's output (its last line) per host

    @model_validator(mode="after")
    def _one_action(self) -> Task:
        if (self.run is None) == (self.put is None):
            raise ValueError("a task needs exactly one of `run` or `put`")
        return self

    @property
    def title(self) -> str:
        if self.name:
            return self.name
        return (
            self.run.split("\n")[0][:60] if self.run else f"put {self.put.dest if self.put else ''}"
        )


class Check(_Model):
    """A health check: an HTTP request or a command, retried until it passes or gives up."""

    http: str | None = None
    expect: int | None = None  # HTTP status (default 200), or exit code (default 0)
    body: str | None = None  # text the HTTP body must contain
    command: str | None = None
    retries: Annotated[int, Field(ge=0, le=1000)] = 3
    interval: Duration = 1.0
    timeout: Duration = 5.0

    @model_validator(mode="after")
    def _one_probe(self) -> Check:
        if (self.http is None) == (self.command is None):
            raise ValueError("a check needs exactly one of `http` or `command`")
        if self.command is not None and self.body is not None:
            raise ValueError("`body` applies to http checks only")
        return self

    @property
    def expected(self) -> int:
        if self.expect is not None:
            return self.expect
        return 200 if self.http is not None else 0


class Rolling(_Model):
    serial: HostCount | list[HostCount] = "100%"
    max_unavailable: HostCount | None = None  # hosts out of service at once within a batch
    max_fail_percentage: Percent = 0.0  # per batch: more failed hosts than this stops
    # failed hosts tolerated in the whole rollout; None: only max_fail_percentage applies
    failure_budget: Annotated[int, Field(ge=0)] | None = None


class HostsStep(_Model):
    hosts: HostCount  # cumulative: deploy until this many (or this share) are done


class CheckStep(_Model):
    check: str
    success: Percent = 100.0  # at least this share of deployed hosts passes -> success
    failure: Percent = 0.0  # more than this share fails -> failure; else inconclusive


class PauseStep(_Model):
    pause: Duration | Literal["until approved"]


class Approval(_Model):
    roles: list[str] = []


class ApproveStep(_Model):
    approve: Approval


def _step_kind(value: object) -> str | None:
    """Pick the step type by its key, so a mistake is reported for that kind only."""
    keys = set(value) if isinstance(value, dict) else set(vars(value)) if value else set()
    for key, kind in (("hosts", "HostsStep"), ("check", "CheckStep"), ("pause", "PauseStep")):
        if key in keys:
            return kind
    return "ApproveStep" if "approve" in keys else None


CanaryStep = Annotated[
    Annotated[HostsStep, Tag("HostsStep")]
    | Annotated[CheckStep, Tag("CheckStep")]
    | Annotated[PauseStep, Tag("PauseStep")]
    | Annotated[ApproveStep, Tag("ApproveStep")],
    Discriminator(
        _step_kind,
        custom_error_type="canary_step",
        custom_error_message="a canary step is one of hosts, check, pause or approve",
    ),
]


class Canary(_Model):
    steps: list[CanaryStep]

    @model_validator(mode="after")
    def _ends_everywhere(self) -> Canary:
        if not any(isinstance(s, HostsStep) for s in self.steps):
            raise ValueError("a canary needs at least one `hosts` step")
        return self


class Strategy(_Model):
    rolling: Rolling | None = None
    canary: Canary | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Strategy:
        if (self.rolling is None) == (self.canary is None):
            raise ValueError("a strategy is exactly one of `rolling` or `canary`")
        return self


class Playbook(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    description: str = ""
    hosts: str = "all"  # inventory group(s) or host(s), comma-separated
    vars: dict[Identifier, Variable] = {}
    checks: dict[Identifier, Check] = {}  # before strategy and verify, which name them
    strategy: Strategy = Strategy(rolling=Rolling())
    capture: dict[Identifier, str] = {}  # run before touching a host; rollback sees `previous`
    tasks: Annotated[list[Task], Field(min_length=1)]
    verify: list[str] = []  # checks run on each host after its tasks
    rollback: list[Task] = []

    @field_validator("strategy")
    @classmethod
    def _gate_checks_exist(cls, strategy: Strategy, info: ValidationInfo) -> Strategy:
        if strategy.canary is not None:
            for i, step in enumerate(strategy.canary.steps):
                if isinstance(step, CheckStep):
                    _known_check(step.check, ("canary", "steps", i, "check"), info)
        return strategy

    @field_validator("verify")
    @classmethod
    def _verify_checks_exist(cls, verify: list[str], info: ValidationInfo) -> list[str]:
        for i, name in enumerate(verify):
            _known_check(name, (i,), info)
        return verify

    def resolve_vars(self, given: dict[str, Any], inventory_vars: dict[str, Any]) -> dict[str, Any]:
        """Declared defaults < inventory vars < values given at run time; checked."""
        unknown = sorted(set(given) - set(self.vars))
        if unknown:
            raise InputError(
                f"{self.name}: unknown variables {unknown}; declared: {sorted(self.vars)}"
            )
        values: dict[str, Any] = {
            k: v.default for k, v in self.vars.items() if v.default is not None
        }
        values |= {k: v for k, v in inventory_vars.items() if k in self.vars}
        values |= given
        for key, spec in self.vars.items():
            if key not in values:
                if spec.required:
                    raise InputError(f"{self.name}: variable {key!r} is required")
                continue
            try:
                spec.check(values[key])
            except ValueError as exc:
                raise InputError(f"{self.name}: variable {key!r} {exc}") from exc
        return values


def _known_check(name: str, where: tuple[str | int, ...], info: ValidationInfo) -> None:
    declared = info.data.get("checks", {})
    if name not in declared:
        raise Within(where, f"unknown check {name!r}; declared: {sorted(declared)}")


def load_playbook(path: str | Path) -> Playbook:
    return load_model(path, Playbook)


def parse_assignments(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`-e key=value` pairs (also chat's `key=value`) -> dict; values stay strings (data)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise InputError(f"expected key=value, not {pair!r}")
        out[key] = value
    return out
