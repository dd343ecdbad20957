"""Hosts and groups, and choosing the hosts a playbook runs on (pure).

In troupe.yaml::

    inventory:
      defaults: {user: deploy, port: 22, key_file: ~/.ssh/troupe}
      hosts:
        web1: {address: 10.0.0.11, vars: {port: 8080}}
        web2: {address: 10.0.0.12, jump: bastion}
        bastion: {address: 203.0.113.5}
        self: {connection: local}
      groups:
        web: [web1, web2]

Every host is also in the implicit group `all`. A target is a group name, a host
name, or several of either separated by commas.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from troupe.errors import InputError
from troupe.units import Duration
from troupe.yamlfile import Within

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HostDefaults(_Model):
    user: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    key_file: str | None = None
    connect_timeout: Duration = 10.0


class HostSpec(_Model):
    """A host as written in troupe.yaml; unset fields come from `defaults`."""

    address: str | None = None
    connection: Literal["ssh", "local"] = "ssh"
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    user: str | None = None
    key_file: str | None = None
    jump: Name | None = None
    vars: dict[str, Any] = {}

    @model_validator(mode="after")
    def _needs_address(self) -> HostSpec:
        if self.connection == "ssh" and not self.address:
            raise ValueError("an ssh host needs an address (or use connection: local)")
        return self


class Host(_Model):
    """A resolved host: what the remote layer needs to reach it."""

    name: str
    connection: Literal["ssh", "local"]
    address: str
    port: int
    user: str | None
    key_file: str | None
    connect_timeout: float
    jump: Host | None = None
    vars: dict[str, Any] = {}

    def template_view(self) -> dict[str, Any]:
        """What playbooks see as `host`."""
        return {"name": self.name, "address": self.address, "port": self.port, "vars": self.vars}


class Inventory(_Model):
    defaults: HostDefaults = HostDefaults()
    hosts: dict[Name, HostSpec] = {}
    groups: dict[Name, list[Name]] = {}

    @field_validator("hosts")
    @classmethod
    def _jumps_exist(cls, hosts: dict[str, HostSpec]) -> dict[str, HostSpec]:
        for name, spec in hosts.items():
            if spec.jump is not None and spec.jump not in hosts:
                raise Within((name, "jump"), f"jump host {spec.jump!r} is not in hosts")
            _jump_chain(hosts, name)
        return hosts

    @field_validator("groups")
    @classmethod
    def _groups_resolve(
        cls, groups: dict[str, list[str]], info: ValidationInfo
    ) -> dict[str, list[str]]:
        hosts = info.data.get("hosts", {})
        for group, members in groups.items():
            if group in hosts or group == "all":
                raise Within((group,), f"group {group!r} has the name of a host (or of 'all')")
            unknown = [m for m in members if m not in hosts and m not in groups]
            if unknown:
                raise Within((group,), f"group {group!r} lists unknown hosts {unknown}")
            _group_cycle(groups, group, ())
        return groups

    def host(self, name: str) -> Host:
        spec = self.hosts[name]
        d = self.defaults
        return Host(
            name=name,
            connection=spec.connection,
            address=spec.address or "127.0.0.1",
            port=spec.port or d.port,
            user=spec.user or d.user,
            key_file=spec.key_file or d.key_file,
            connect_timeout=d.connect_timeout,
            jump=self.host(spec.jump) if spec.jump else None,
            vars=dict(spec.vars),
        )

    def names(self, target: str) -> list[str]:
        """Host names for a target (`web`, `web1`, `web,db`, `all`), in inventory order."""
        wanted: set[str] = set()
        for part in (p.strip() for p in target.split(",")):
            if not part:
                continue
            wanted |= self._expand(part)
        return [name for name in self.hosts if name in wanted]

    def _expand(self, part: str) -> set[str]:
        """A group's hosts, recursively (validation has ruled out loops)."""
        if part == "all":
            return set(self.hosts)
        if part in self.hosts:
            return {part}
        if part in self.groups:
            return set().union(*(self._expand(m) for m in self.groups[part]))
        raise InputError(f"no host or group named {part!r} in the inventory")

    def select(self, target: str, limit: str | None = None) -> list[Host]:
        """The hosts of `target`, narrowed to those also in `limit` (if given)."""
        names = self.names(target)
        if limit:
            allowed = set(self.names(limit))
            names = [n for n in names if n in allowed]
        if not names:
            raise InputError(
                f"no hosts match {target!r}" + (f" with --limit {limit!r}" if limit else "")
            )
        return [self.host(n) for n in names]


def _jump_chain(hosts: dict[str, HostSpec], name: str) -> None:
    seen = [name]
    jump = hosts[name].jump
    while jump is not None:
        if jump in seen:
            raise Within((name, "jump"), f"jump hosts form a loop {[*seen, jump]}")
        seen.append(jump)
        jump = hosts[jump].jump


def _group_cycle(groups: dict[str, list[str]], group: str, seen: tuple[str, ...]) -> None:
    if group in seen:
        raise Within((seen[0],), f"group {group!r} contains itself: {' -> '.join((*seen, group))}")
    for member in groups.get(group, []):
        if member in groups:
            _group_cycle(groups, member, (*seen, group))
