"""The deployment assets, checked without a Docker engine: Dockerfile, .dockerignore,
docker-compose.yml (against the Compose specification's JSON Schema), the systemd units,
and every config file and command they reference (`troupe validate`, `troupe CMD --help`).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from troupe.health import DEFAULT_PORT

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = ROOT.parent / "shared" / "compose-spec" / "compose-spec.json"
SYSTEMD = ROOT / "deploy" / "systemd"
TROUPE = [sys.executable, "-m", "troupe.cli"]


# ---- the Dockerfile ----------------------------------------------------------------------------


def dockerfile_instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, continuations joined."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    out = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def dockerfile_healthcheck() -> tuple[list[str], int]:
    """The HEALTHCHECK command (exec form) and the port its URL names."""
    checks = [args for kind, args in dockerfile_instructions() if kind == "HEALTHCHECK"]
    assert len(checks) == 1, checks
    command = _exec_form(checks[0].split("CMD", 1)[1])
    ports = {int(p) for a in command for p in re.findall(r"127\.0\.0\.1:(\d+)/healthz", a)}
    assert len(ports) == 1, command
    return command, ports.pop()


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (kind, _) in enumerate(instructions) if kind == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_slim_non_root_and_checks_health() -> None:
    instructions = dockerfile_instructions()
    bases = [args.split()[0] for kind, args in instructions if kind == "FROM"]
    assert bases, "no FROM"
    assert all(re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", b) for b in bases), bases

    final = _final_stage(instructions)
    users = [args for kind, args in final if kind == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    runs = " ".join(args for kind, args in instructions if kind == "RUN")
    for pip in re.findall(r"pip (?:install|wheel)[^&;]*", runs):
        assert "--no-cache-dir" in pip, pip
    final_runs = " ".join(args for kind, args in final if kind == "RUN")
    if "apt-get install" in final_runs:
        assert "--no-install-recommends" in final_runs
        assert "rm -rf /var/lib/apt/lists/*" in final_runs
    for compiler in ("gcc", "build-essential", "g++", "make "):
        assert compiler not in final_runs, compiler

    entrypoint = [args for kind, args in final if kind == "ENTRYPOINT"]
    assert entrypoint and _exec_form(entrypoint[-1]) == ["troupe"]

    command, port = dockerfile_healthcheck()
    assert command[:3] == ["python", "-m", "troupe.health"]
    assert port == DEFAULT_PORT
    env = " ".join(args for kind, args in final if kind == "ENV")
    assert f"TROUPE_HEALTH_PORT={DEFAULT_PORT}" in env, "the replica must serve where it is checked"
    assert "TROUPE_BOT_TOKEN" not in env and "xox" not in env, "no secrets in the image"


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is excluded first, then what the image needs allowed"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for kind, args in dockerfile_instructions():
        if kind == "COPY" and "--from=" not in args:
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            copied |= {s.rstrip("/") for s in sources if s not in (".", "./")}
    assert copied <= allowed, f"COPY of files the context leaves out: {copied - allowed}"
    assert not {".venv", ".git", "tests"} & allowed
