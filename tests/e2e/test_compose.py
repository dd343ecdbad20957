"""docker-compose.yml's topology as local processes, and a deploy through it.

There is no Docker engine here, so each service runs as the process its container would
run: the same `troupe ...` commands and arguments (from docker-compose.yml), the same
configuration files (deploy/compose/), the same environment. What a container gets from
Docker is translated to loopback, and nothing else is changed:

- service names: `localslack` -> 127.0.0.1 on a free port; `target-N` -> a real sshd host
  of the test fleet (127.0.1.x, troupe.sshfleet), with its login (user, port, key: the
  ssh-keys volume's key pair) and its writable directory in place of /srv/app;
- the image's ENV TROUPE_HEALTH_PORT (8390 in every container) -> a free port per replica;
- the image's /srv/troupe (troupe.yaml mounted, playbooks/ copied) -> a directory here.

Then alice posts `troupe deploy rolling-update version=...` in #ops and sees ✅, every
target serves the new version, and every replica passes the image's HEALTHCHECK.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from slack_sdk import WebClient

from tests.e2e.fleet import free_port, poll, stop_process, tail
from tests.integration.test_deploy_assets import (
    bind_mounts,
    compose,
    dockerfile_healthcheck,
    troupe_command,
)
from troupe.chat import retry_handlers
from troupe.localslack.workspace import load_workspace
from troupe.sshfleet import SshFleet

ROOT = Path(__file__).resolve().parents[2]
IN_IMAGE = Path("/srv/troupe")  # the image's WORKDIR: troupe.yaml and playbooks/
PYTHON = [sys.executable, "-m", "troupe.cli"]
VERSION = "2.0.0"


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=cwd
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return tail(self.log, 60)


class ComposeAsProcesses:
    """docker-compose.yml's services as local processes (see the module docstring)."""

    def __init__(self, workdir: Path, targets: SshFleet) -> None:
        self.workdir = workdir
        self.targets = targets
        self.services_spec = compose()["services"]
        self.slack_port = free_port()
        self.slack_url = f"http://127.0.0.1:{self.slack_port}"
        self.srv = workdir / "srv-troupe"  # what /srv/troupe holds in the image
        self.services: dict[str, Service] = {}
        self.health_ports: dict[str, int] = {}

    # ---- translation ----

    def loopback(self, arg: str) -> str:
        """A container's view of the network and files -> this machine's."""
        arg = arg.replace("//localslack:8310/", f"//127.0.0.1:{self.slack_port}/")
        if arg.startswith(str(IN_IMAGE)):
            return str(self.srv / Path(arg).relative_to(IN_IMAGE))
        return arg

    def _config(self) -> None:
        """The mounted troupe.yaml, with the service names as loopback hosts."""
        replica = self.services_spec["replica-a"]
        source = bind_mounts(replica)[str(IN_IMAGE / "troupe.yaml")]
        config = yaml.safe_load(source.read_text())
        config["slack"]["api_url"] = self.loopback(config["slack"]["api_url"])
        inventory = config["inventory"]
        inventory["defaults"] |= {
            "user": self.targets.inventory().defaults.user,
            "port": self.targets.port,
            "key_file": str(self.targets.client_key),
        }
        app_port = free_port()
        for name, daemon in zip(sorted(inventory["hosts"]), self.targets.daemons, strict=True):
            host = inventory["hosts"][name]
            host["address"] = daemon.address
            host["vars"] |= {"root": str(daemon.root), "app_port": app_port}
        self.srv.mkdir()
        (self.srv / "troupe.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        shutil.copytree(ROOT / "playbooks", self.srv / "playbooks")  # the image's COPY

    def _mounts(self) -> None:
        """Every other file a service mounts into /srv/troupe, as it is (a bind mount)."""
        for spec in self.services_spec.values():
            for target, source in bind_mounts(spec).items():
                copy = Path(self.loopback(target))
                if copy.parent == self.srv and not copy.exists():
                    shutil.copyfile(source, copy)

    def _service(self, name: str) -> Service:
        spec = self.services_spec[name]
        argv = [self.loopback(a) for a in troupe_command(spec)[1:]]
        if "--host" in argv:  # its service name's address: loopback here
            argv[argv.index("--host") + 1] = "127.0.0.1"
        if "--port" in argv:  # a published port: any free one here
            argv[argv.index("--port") + 1] = str(self.slack_port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TROUPE_")}
        env |= {k: str(v) for k, v in spec.get("environment", {}).items()}
        env["PYTHONUNBUFFERED"] = "1"
        if name.startswith("replica-"):
            self.health_ports[name] = free_port()
            env["TROUPE_HEALTH_PORT"] = str(self.health_ports[name])
        return Service(name, [*PYTHON, *argv], env, self.workdir / f"{name}.log")

    # ---- life ----

    def up(self) -> None:
        self._config()
        self._mounts()
        slack = self.services["localslack"] = self._service("localslack")
        slack.start(self.srv)
        poll(self._slack_up, 20, "localslack", 0.1, slack.output)
        for name in sorted(n for n in self.services_spec if n.startswith("replica-")):
            self.services[name] = self._service(name)
            self.services[name].start(self.srv)
        for name, port in self.health_ports.items():
            poll(
                functools.partial(self._healthy, port),
                60,
                f"{name}'s /healthz to answer 200",
                0.25,
                self.services[name].output,
            )

    def _slack_up(self) -> bool:
        assert self.services["localslack"].alive(), self.services["localslack"].output()
        with contextlib.suppress(requests.RequestException):
            return requests.get(self.slack_url + "/", timeout=2).ok
        return False

    def _healthy(self, port: int) -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        return False

    def healthchecks(self) -> dict[str, list[str]]:
        """Each running service's health check: its compose `healthcheck`, else the
        image's HEALTHCHECK (with the port that service serves on here)."""
        image_check, image_port = dockerfile_healthcheck()
        out = {}
        for name in self.services:
            spec = self.services_spec[name].get("healthcheck")
            if spec is not None:
                assert spec["test"][0] == "CMD"
                argv = [self.loopback(a) for a in spec["test"][1:]]
            else:
                port = self.health_ports[name]
                argv = [a.replace(f":{image_port}/", f":{port}/") for a in image_check]
            assert argv[0] == "python"
            out[name] = [sys.executable, *argv[1:]]
        return out

    def down(self) -> None:
        for service in reversed(list(self.services.values())):
            if service.proc is not None:
                stop_process(service.proc, grace=40)

    def logs(self) -> str:
        return "\n".join(f"----- {s.name} -----\n{s.output()}" for s in self.services.values())


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[ComposeAsProcesses]:
    fleet_dir = Path(tempfile.mkdtemp(prefix="troupe-compose-"))  # readable by the ssh user
    targets = SshFleet(
        len([n for n in compose()["services"] if n.startswith("target-")]), fleet_dir
    )
    up = ComposeAsProcesses(tmp_path, targets)
    try:
        up.up()
        yield up
    except BaseException:
        print(up.logs())
        raise
    finally:
        up.down()
        for daemon in targets.daemons:  # the demo app the playbook started, by its pid file
            pid = daemon.root / "app.pid"
            if pid.exists():
                subprocess.run(["kill", pid.read_text().strip()], check=False)
        targets.stop()
        shutil.rmtree(fleet_dir, ignore_errors=True)


def _alice(up: ComposeAsProcesses) -> tuple[WebClient, str]:
    workspace = load_workspace(ROOT / "deploy" / "compose" / "workspace.yaml")
    alice = next(u for u in workspace.users if u.name == "alice")
    channel = workspace.channels[0].id
    client = WebClient(
        token=alice.token, base_url=up.slack_url + "/api/", retry_handlers=retry_handlers()
    )
    return client, channel


def test_a_deploy_through_the_compose_topology(topology: ComposeAsProcesses) -> None:
    client, channel = _alice(topology)
    ts = str(
        client.chat_postMessage(
            channel=channel, text=f"troupe deploy rolling-update version={VERSION}"
        )["ts"]
    )

    def done() -> dict[str, Any] | None:
        message = client.conversations_history(channel=channel, latest=ts, inclusive=True, limit=1)[
            "messages"
        ][0]
        names = {r["name"] for r in message.get("reactions", [])}
        return message if names & {"white_check_mark", "x"} else None

    def thread() -> str:
        replies = client.conversations_replies(channel=channel, ts=ts)["messages"]
        return "\n".join(str(m.get("text", ""))[:300] for m in replies) + topology.logs()

    message = poll(done, 120, "the deploy to be marked done", 0.5, thread)
    assert "white_check_mark" in {r["name"] for r in message["reactions"]}, thread()
    replies = client.conversations_replies(channel=channel, ts=ts)["messages"][1:]
    claims = [m for m in replies if re.match(r":lock: claimed by \*replica-[abc]\*", m["text"])]
    assert claims, thread()  # one of the compose replicas ran it

    config = yaml.safe_load((topology.srv / "troupe.yaml").read_text())
    for host in config["inventory"]["hosts"].values():
        url = f"http://{host['address']}:{host['vars']['app_port']}/health"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read().decode().strip() == f"ok {VERSION}"

    for name, argv in topology.healthchecks().items():
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, f"{name}: {probe.stdout}{probe.stderr}"
