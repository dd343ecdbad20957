"""Edge: running commands on hosts. One Remote per host, kept open across steps.

- FabricRemote: SSH through Fabric (persistent connection, jump hosts, sudo, upload);
- LocalRemote: the replica's own machine (subprocess);
- ScriptedRemote: a fake for unit tests of the executor (answers from a script).

A command that exits non-zero is a CommandResult, not an exception: per-host
outcomes are values. Exceptions are for not being able to run it at all
(ConnectError) or a command cut by its timeout (CommandTimeout).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from troupe.errors import CommandTimeout, ConnectError
from troupe.inventory import Host


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Remote(Protocol):
    host: Host

    def run(
        self, command: str, *, sudo: bool = False, timeout: float | None = None
    ) -> CommandResult:
        """Run a shell command (already quoted by the templating layer)."""
        ...

    def put(self, src: Path, dest: str, *, mode: str | None = None, sudo: bool = False) -> None:
        """Upload a local file to `dest` on the host."""
        ...

    def close(self) -> None: ...


Connector = Callable[[Host], Remote]


# ---- the fake ----------------------------------------------------------------------------


@dataclass
class Rule:
    """How ScriptedRemote answers commands matching `pattern` (a regex searched in the command)."""

    pattern: str
    exit_code: int = 0
    stdout: str = ""
    hosts: set[str] | None = None  # None: every host
    raises: str | None = None  # "connect" or "timeout"
    times: int | None = None  # apply this many times, then fall through


@dataclass
class ScriptedRemote:
    """Answers from rules, records every call; shared `log` keeps the global order."""

    host: Host
    rules: list[Rule]
    log: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(
        self, command: str, *, sudo: bool = False, timeout: float | None = None
    ) -> CommandResult:
        with self.lock:
            self.log.append((self.host.name, ("sudo " if sudo else "") + command))
            rule = self._match(command)
        if rule is None:
            return CommandResult(0)
        if rule.raises == "connect":
            raise ConnectError(self.host.name, "connection refused")
        if rule.raises == "timeout":
            raise CommandTimeout(self.host.name, command, timeout or 0)
        return CommandResult(rule.exit_code, rule.stdout, "" if rule.exit_code == 0 else "failed")

    def _match(self, command: str) -> Rule | None:
        for rule in self.rules:
            if rule.hosts is not None and self.host.name not in rule.hosts:
                continue
            if rule.times == 0 or not re.search(rule.pattern, command):
                continue
            if rule.times is not None:
                rule.times -= 1
            return rule
        return None

    def put(self, src: Path, dest: str, *, mode: str | None = None, sudo: bool = False) -> None:
        with self.lock:
            self.log.append((self.host.name, f"put {src} {dest}"))

    def close(self) -> None:
        with self.lock:
            self.log.append((self.host.name, "close"))


def scripted(rules: list[Rule], log: list[tuple[str, str]] | None = None) -> Connector:
    """A Connector for unit tests; every host shares `log` (and one lock) so order is global."""
    shared = log if log is not None else []
    lock = threading.Lock()

    def connect(host: Host) -> Remote:
        return ScriptedRemote(host, rules, shared, lock)

    return connect
