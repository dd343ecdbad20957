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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from troupe.errors import InputError
from troupe.units import Duration

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

    @model_validator(mode="after")
    def _consistent(self) -> Inventory:
        for group, members in self.groups.items():
            if group in self.hosts or group == "all":
                raise ValueError(f"group {group!r} has the name of a host (or of 'all')")
            unknown = [m for m in members if m not in self.hosts and m not in self.groups]
            if unknown:
                raise ValueError(f"group {group!r} lists unknown hosts {unknown}")
        for name, spec in self.hosts.items():
            if spec.jump is not None and spec.jump not in self.hosts:
                raise ValueError(f"host {name!r}: jump host {spec.jump!r} is not in hosts")
            _jump_chain(self, name)
        return self

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
            wanted |= self._expand(part, seen=())
        return [name for name in self.hosts if name in wanted]

    def _expand(self, part: str, seen: tuple[str, ...]) -> set[str]:
        if part == "all":
            return set(self.hosts)
        if part in self.hosts:
            return {part}
        if part in self.groups:
            if part in seen:
                raise InputError(f"group {part!r} contains itself")
            return set().union(*(self._expand(m, (*seen, part)) for m in self.groups[part]))
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


def _jump_chain(inventory: Inventory, name: str) -> None:
    seen = [name]
    jump = inventory.hosts[name].jump
    while jump is not None:
        if jump in seen:
            raise ValueError(f"host {name!r}: jump hosts form a loop {[*seen, jump]}")
        seen.append(jump)
        jump = inventory.hosts[jump].jump
