"""The deployment assets, checked without a Docker engine: Dockerfile, .dockerignore,
docker-compose.yml (against the Compose specification's JSON Schema), the systemd units,
and every config file and command they reference (`troupe validate`, `troupe CMD --help`).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from troupe.config import load_config
from troupe.health import DEFAULT_PORT
from troupe.localslack.workspace import load_workspace

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
    cmd = [args for kind, args in final if kind == "CMD"]
    assert cmd and _exec_form(cmd[-1])[:2] == ["run", "--no-supervisor"]
    done = _troupe(*_exec_form(cmd[-1]), "--help")
    assert done.returncode == 0, done.stderr

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


# ---- docker-compose.yml ------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _troupe_image(service: dict[str, Any]) -> bool:
    return service.get("image") == "troupe:local"


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> file in this repository, for the service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            out[target] = ROOT / source
    return out


def troupe_command(service: dict[str, Any]) -> list[str]:
    """What the container runs: the image's ENTRYPOINT, then the service's command."""
    assert _troupe_image(service)
    return ["troupe", *service["command"]]


def _validator() -> jsonschema.Draft7Validator:
    """The spec's own draft (07), with its formats checked."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert "draft-07" in schema["$schema"], schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def test_compose_file_validates_against_the_compose_spec() -> None:
    _validator().validate(compose())  # raises with the path of the first problem


def test_compose_schema_check_is_not_vacuous() -> None:
    broken = compose()
    broken["services"]["replica-a"]["restart_policy"] = "always"  # not a Compose key
    with pytest.raises(jsonschema.ValidationError):
        _validator().validate(broken)


def test_compose_topology() -> None:
    services = compose()["services"]
    replicas = sorted(n for n in services if n.startswith("replica-"))
    targets = sorted(n for n in services if n.startswith("target-"))
    assert replicas == ["replica-a", "replica-b", "replica-c"]
    assert targets == ["target-1", "target-2", "target-3"]
    assert "localslack" in services
    assert services["localslack"]["build"] == "."
    assert services["ssh-keys"]["build"] == "./deploy/target-host"
    for name in targets:
        assert services[name]["image"] == services["ssh-keys"]["image"]
        assert services[name]["build"] == services["ssh-keys"]["build"]
    for name in replicas:
        service = services[name]
        assert _troupe_image(service) and service["build"] == "."
        command = troupe_command(service)
        assert command[command.index("--replica") + 1] == name
        assert "healthcheck" not in service, "the image's HEALTHCHECK (/healthz) applies"
        # The image has no git checkout for a supervisor to switch: Docker restarts.
        assert command[:3] == ["troupe", "run", "--no-supervisor"]
        assert set(service["environment"]) == {"TROUPE_BOT_TOKEN", "TROUPE_APP_TOKEN"}


def test_compose_configs_and_commands_are_valid(tmp_path: Path) -> None:
    """Every file compose mounts is valid for its reader; every command accepts its
    arguments (`troupe ... --help` parses them all, then prints the help)."""
    services = compose()["services"]
    workspace = load_workspace(ROOT / "deploy" / "compose" / "workspace.yaml")
    for name, service in services.items():
        mounts = bind_mounts(service)
        for path in mounts.values():
            assert path.is_file(), f"{name} mounts {path}, which does not exist"
        if not _troupe_image(service):
            continue
        command = troupe_command(service)
        done = _troupe(*command[1:], "--help")
        assert done.returncode == 0, f"{name}: {shlex.join(command)}\n{done.stderr}"
        config_file = mounts.get(command[command.index("-c") + 1]) if "-c" in command else None
        if config_file is not None:
            done = _troupe("validate", str(config_file))
            assert done.returncode == 0, f"{name}: troupe validate {config_file}\n{done.stderr}"
    # The replicas' tokens are apps of localslack's workspace, and their bots the fleet.
    config = load_config(ROOT / "deploy" / "compose" / "troupe.yaml", env={})
    apps = {a.bot_token: a for a in workspace.apps}
    bots = set()
    for name in ("replica-a", "replica-b", "replica-c"):
        env = services[name]["environment"]
        app = apps[env["TROUPE_BOT_TOKEN"]]
        assert app.app_token == env["TROUPE_APP_TOKEN"]
        bots.add(app.bot_user_id)
    assert bots == set(config.slack.fleet)
    assert config.slack.channel in {c.id for c in workspace.channels}
    localslack = troupe_command(services["localslack"])
    port = localslack[localslack.index("--port") + 1]
    assert config.slack.api_url == f"http://localslack:{port}/api/"
    assert set(config.inventory.hosts) == {n for n in services if n.startswith("target-")}


def test_target_host_scripts(tmp_path: Path) -> None:
    """The target host's scripts are valid sh; make-keys makes a usable key pair."""
    scripts = ROOT / "deploy" / "target-host"
    for script in ("entrypoint.sh", "make-keys.sh"):
        done = subprocess.run(["sh", "-n", str(scripts / script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    owner = f"{os.getuid()}:{os.getgid()}"
    env = {"PATH": os.environ["PATH"], "KEYS": str(tmp_path), "KEY_OWNER": owner}
    for _ in range(2):  # the second start keeps the key it made the first time
        done = subprocess.run(
            ["sh", str(scripts / "make-keys.sh")], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        if _ == 0:
            first = (tmp_path / "id_ed25519").read_bytes()
    assert (tmp_path / "id_ed25519").read_bytes() == first
    assert (tmp_path / "authorized_keys").read_text() == (tmp_path / "id_ed25519.pub").read_text()
    assert (tmp_path / "id_ed25519").stat().st_mode & 0o777 == 0o600
    assert not list((ROOT / "deploy").rglob("id_*")), "no key pair in the repository"


def test_target_host_image_serves_ssh_with_what_the_playbooks_need() -> None:
    context = ROOT / "deploy" / "target-host"
    instructions = dockerfile_instructions(context / "Dockerfile")
    assert instructions[0][0] == "FROM" and "slim" in instructions[0][1]
    runs = " ".join(args for kind, args in instructions if kind == "RUN")
    for package in ("openssh-server", "sudo", "python3"):  # sshd; sudo: tasks; the demo app
        assert package in runs, package
    assert "rm -f /etc/ssh/ssh_host_*" in runs, "no host key baked into the image"
    for kind, args in instructions:
        if kind == "COPY":
            for source in args.split()[:-1]:
                assert (context / source).is_file(), source
    entrypoint = [_exec_form(args) for kind, args in instructions if kind == "ENTRYPOINT"]
    assert entrypoint == [["/usr/local/bin/entrypoint.sh"]]
    keys = compose()["services"]["ssh-keys"]["entrypoint"]
    assert keys == ["/usr/local/bin/make-keys.sh"]


def _troupe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TROUPE, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


# ---- systemd -----------------------------------------------------------------------------------

# Where docs/operations.md installs the example files the unit reads.
INSTALLED = {
    "/etc/troupe/troupe.yaml": SYSTEMD / "troupe.yaml",
    "/etc/troupe/%i.env": SYSTEMD / "replica.env.example",
}
HARDENING = {
    "NoNewPrivileges": "true",
    "ProtectSystem": "strict",
    "PrivateTmp": "true",
    "ProtectHome": "true",
    "ReadWritePaths": "/opt/troupe",
}


class _UnitParser(configparser.ConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr  # systemd keys are case-sensitive


def unit() -> configparser.ConfigParser:
    parser = _UnitParser(interpolation=None, strict=True)
    parser.read_string((SYSTEMD / "troupe@.service").read_text())
    return parser


def test_systemd_unit_runs_a_replica_hardened() -> None:
    service = unit()["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == value, key
    assert service["User"] != "root"
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "troupe"
    assert argv[1:] == ["run", "-c", "/etc/troupe/troupe.yaml", "--replica", "%i"]
    assert service["EnvironmentFile"] in INSTALLED
    assert int(service["TimeoutStopSec"]) > 30 + 5, "longer than the lease: hand-over time"


def test_systemd_references_are_valid() -> None:
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"].replace("%i", "replica-a"))
    config = INSTALLED[argv[argv.index("-c") + 1]]
    done = _troupe(*argv[1:], "--help")
    assert done.returncode == 0, done.stderr
    done = _troupe("validate", str(config))
    assert done.returncode == 0, done.stderr
    env = dict(
        line.split("=", 1)
        for line in INSTALLED[service["EnvironmentFile"]].read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert {"TROUPE_BOT_TOKEN", "TROUPE_APP_TOKEN", "TROUPE_SIGNING_SECRET"} <= set(env)
    assert all("REPLACE-ME" in env[k] for k in ("TROUPE_BOT_TOKEN", "TROUPE_APP_TOKEN"))
    assert load_config(config, env=env).health.port == int(env["TROUPE_HEALTH_PORT"])
    # The example inventory fits the shipped playbooks, self-update's `replicas` included.
    for playbook, extra in (("self-update", []), ("rolling-update", ["-e", "version=1.0.0"])):
        done = _troupe("plan", f"playbooks/{playbook}.yaml", "-c", str(config), *extra)
        assert done.returncode == 0, f"{playbook}: {done.stderr}"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze knows every directive (a typo in a hardening option is only a
    warning to systemd, which would leave the service unhardened)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: apt-get install systemd"
    text = (SYSTEMD / "troupe@.service").read_text()
    # The checkout's troupe, where the unit expects /opt/troupe's.
    text = text.replace("/opt/troupe/.venv/bin/troupe", str(Path(sys.executable).parent / "troupe"))
    (tmp_path / "troupe@.service").write_text(text)
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "troupe@replica-a.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "troupe@" in line and "Failed to" not in line.split("troupe@")[0]
    ]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
