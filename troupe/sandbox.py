"""`troupe sandbox`: localslack with its web chat page, N replicas and a local fleet, in one
command, so a newcomer sees Troupe work and a playbook author can rehearse.

What it starts, each recorded by PID and stopped by PID on Ctrl-C (or SIGTERM):

- `troupe localslack` with a sandbox workspace (people alice and bob; one Slack app per
  replica, or one app shared by all with `--shared-app`);
- the replicas, `troupe run -c DIR/troupe.yaml --replica troupe-a` ..., tokens in their
  environment;
- the fleet's hosts: real sshd daemons on 127.0.1.x when we are root and openssh-server is
  installed (`troupe.sshfleet`), otherwise `connection: local` hosts, each a directory;
- whatever the playbooks start on the hosts (the demo app): this process is a child
  subreaper, so daemons its descendants leave behind stay its descendants and are stopped
  with the rest. Nothing that it did not start is ever signalled.

Children run in sessions of their own: a terminal's Ctrl-C reaches only the sandbox, which
then stops the replicas first (each hands its claim over), then everything else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import ascii_lowercase
from typing import Any, Literal

import click
import requests
import yaml

import troupe
from troupe import procs
from troupe.errors import InputError, TroupeError
from troupe.localslack.workspace import App, Channel, Team, User, Workspace, default_workspace

CHANNEL = "C0OPS00001"
PREFIX = "troupe"
PEOPLE = [
    User(id="U0ALICE", name="alice", token="xoxp-alice", real_name="Alice"),  # noqa: S106
    User(id="U0BOB", name="bob", token="xoxp-bob", real_name="Bob"),  # noqa: S106
]
SHARED_APP = App(
    id="A0TROUPE",
    name="troupe",
    bot_user_id="U0TROUPE",
    bot_token="xoxb-troupe",  # noqa: S106 - a local sandbox's made-up token
    app_token="xapp-troupe",  # noqa: S106
    signing_secret="s3cr3t",  # noqa: S106
)
MAX_SHARED = 10  # Slack's limit of Socket Mode connections per app
START_TIMEOUT = 60.0
STOP_GRACE = 15.0  # a replica finishes its running step and hands its claim over meanwhile
FleetMode = Literal["auto", "ssh", "local"]


class SandboxError(TroupeError):
    """The sandbox could not start (the message says what to do)."""


# ---- what the sandbox writes (pure) --------------------------------------------------------


def replica_names(n: int) -> list[str]:
    return [f"troupe-{x}" for x in ascii_lowercase[:n]]


def sandbox_workspace(replicas: int, shared_app: bool) -> Workspace:
    """alice and bob in #ops with the replicas' bot users: one app per replica (every
    replica sees every event; the pin race decides) or one shared app (Slack hands each
    event to one of its connections; the sweeper does the rest)."""
    apps = [SHARED_APP] if shared_app else default_workspace(ascii_lowercase[:replicas]).apps
    members = [u.id for u in PEOPLE] + [a.bot_user_id for a in apps]
    return Workspace(
        team=Team(id="T0TROUPE", name="troupe-sandbox"),
        users=PEOPLE,
        channels=[Channel(id=CHANNEL, name="ops", members=members, purpose="Deployments")],
        apps=apps,
    )


def app_of(workspace: Workspace, index: int) -> App:
    apps = workspace.apps
    return apps[0] if len(apps) == 1 else apps[index]


@dataclass(frozen=True)
class HostEntry:
    name: str
    spec: dict[str, Any]  # the inventory entry in troupe.yaml


def sandbox_config(
    workspace: Workspace,
    api_url: str,
    hosts: list[HostEntry],
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "inventory": {
            "defaults": defaults or {},
            "hosts": {h.name: h.spec for h in hosts},
            "groups": {"web": [h.name for h in hosts]},
        },
        "execution": {"forks": 10, "playbooks_dir": "playbooks"},
        "slack": {
            "channel": CHANNEL,
            "api_url": api_url,
            "fleet": sorted(a.bot_user_id for a in workspace.apps),
            "prefix": PREFIX,
        },
    }


def default_playbooks() -> Path:
    """The example playbooks of this checkout (the sandbox runs from one: `make run`)."""
    return Path(troupe.__file__).resolve().parent.parent / "playbooks"


# ---- the running sandbox -------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    replicas: int = 3
    hosts: int = 5
    port: int = 8310
    shared_app: bool = False
    directory: Path | None = None
    fleet: FleetMode = "auto"
    rate_limits: str = "1"
    playbooks: Path = field(default_factory=default_playbooks)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


class Sandbox:
    """Everything `troupe sandbox` starts, and the order it stops it in."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.dir = _directory(options.directory)
        self.workspace = sandbox_workspace(options.replicas, options.shared_app)
        self.url = ""
        self.localslack: Child | None = None
        self.replicas: list[Child] = []
        self.ssh: Any = None  # troupe.sshfleet.SshFleet when the hosts are sshd daemons
        self.fleet_note = ""
        self.defaults: dict[str, Any] = {}  # the inventory's host defaults (SSH login)
        self.hurry = threading.Event()

    # ---- start ----

    def start(self) -> None:
        procs.become_subreaper()
        self._playbooks()
        self._start_localslack()  # first: a port in use is the likeliest problem
        hosts = self._hosts()
        config = self.dir / "troupe.yaml"
        config.write_text(
            yaml.safe_dump(
                sandbox_config(self.workspace, self.url + "/api/", hosts, self.defaults),
                sort_keys=False,
            )
        )
        for i, name in enumerate(replica_names(self.options.replicas)):
            self._start_replica(i, name, config)
        self._wait_replicas()
        self._roll_call()

    def _hosts(self) -> list[HostEntry]:
        names = [f"web{i}" for i in range(1, self.options.hosts + 1)]
        why_not = _sshd_unavailable()
        if self.options.fleet == "ssh" and why_not:
            raise SandboxError(f"cannot start sshd hosts: {why_not}")
        if self.options.fleet == "local" or why_not:
            self.fleet_note = (
                f"{len(names)} local hosts (connection: local), each a directory under "
                f"{self.dir / 'hosts'}" + (f"; no sshd hosts because {why_not}" if why_not else "")
            )
            return [self._local_host(n) for n in names]
        return self._ssh_hosts(names)

    def _local_host(self, name: str) -> HostEntry:
        root = self.dir / "hosts" / name
        root.mkdir(parents=True, exist_ok=True)
        spec = {"connection": "local", "vars": {"root": str(root), "app_port": procs.free_port()}}
        return HostEntry(name, spec)

    def _ssh_hosts(self, names: list[str]) -> list[HostEntry]:
        from troupe.sshfleet import USER, SshFleet  # noqa: PLC0415 - only when sshd is used

        self.dir.chmod(0o755)  # the hosts' login user reads its key and writes its directory
        self.ssh = SshFleet(len(names), self.dir / "sshd")
        self.defaults = {"user": USER, "port": self.ssh.port, "key_file": str(self.ssh.client_key)}
        out = []
        for name, daemon in zip(names, self.ssh.daemons, strict=True):
            spec = {"address": daemon.address, "vars": {"root": str(daemon.root), "app_port": 8080}}
            out.append(HostEntry(name, spec))
        first, last = self.ssh.daemons[0].address, self.ssh.daemons[-1].address
        self.fleet_note = (
            f"{len(names)} real sshd hosts on {first}..{last} port {self.ssh.port} "
            f"(login user {USER}), each serving the demo app on port 8080"
        )
        return out

    def _playbooks(self) -> None:
        source = self.options.playbooks
        if not (source / "canary.yaml").is_file():
            raise SandboxError(
                f"the example playbooks are not in {source}; run the sandbox from a Troupe "
                "checkout (make run) or pass --playbooks DIR"
            )
        shutil.copytree(source, self.dir / "playbooks", dirs_exist_ok=True)

    def _start_localslack(self) -> None:
        workspace_file = self.dir / "workspace.yaml"
        workspace_file.write_text(
            yaml.safe_dump(self.workspace.model_dump(mode="json"), sort_keys=False)
        )
        argv = procs.localslack_argv(
            workspace_file, self.options.port, ["--rate-limits", self.options.rate_limits]
        )
        log = self.dir / "localslack.log"
        self.localslack = Child("localslack", procs.spawn(argv, log, own_group=True), log)
        self.url = _wait_localslack(self.localslack)

    def _start_replica(self, index: int, name: str, config: Path) -> None:
        app = app_of(self.workspace, index)
        env = procs.replica_env(app.bot_token, app.app_token)
        log = self.dir / f"{name}.log"
        proc = procs.spawn(
            procs.replica_argv(config, name), log, env=env, cwd=self.dir, own_group=True
        )
        self.replicas.append(Child(name, proc, log))

    def _wait_replicas(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(self.replicas)
        while waiting:
            for child in list(waiting):
                if child.proc.poll() is not None:
                    raise SandboxError(f"replica {child.name} exited:\n{_tail(child.log)}")
                if f"{child.name} ready in" in _tail(child.log, 400):
                    waiting.remove(child)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(c.name for c in waiting)
                raise SandboxError(f"replicas not ready after {START_TIMEOUT:g}s: {names}")
            time.sleep(0.1)

    def _roll_call(self) -> None:
        """Ask the fleet to answer, so the page's side panel shows every replica's version."""
        with contextlib.suppress(requests.RequestException):
            requests.post(
                self.url + "/api/chat.postMessage",
                headers={"Authorization": f"Bearer {PEOPLE[0].token}"},
                json={"channel": CHANNEL, "text": f"{PREFIX} roll call"},
                timeout=10,
            )

    # ---- running ----

    def banner(self) -> str:
        o = self.options
        topology = "one shared Slack app" if o.shared_app else "one Slack app each"
        people = ", ".join(f"{u.name} ({u.token})" for u in self.workspace.users)
        return "\n".join(
            [
                f"Troupe sandbox: {o.replicas} replicas ({topology}), "
                f"{', '.join(c.name for c in self.replicas)}",
                f"  fleet: {self.fleet_note}",
                f"  chat: open {self.url}/ and type `{PREFIX} deploy canary version=2.0.0`",
                f"  Web API base_url: {self.url}/api/ · people: {people}",
                f"  files and logs: {self.dir}",
                "  Ctrl-C stops everything the sandbox started.",
            ]
        )

    def watch(self, stop: threading.Event) -> int:
        """Until `stop` is set: report replicas that die; end if localslack dies."""
        reported: set[str] = set()
        while not stop.wait(0.5):
            procs.reap_orphans(self._own_pids())
            assert self.localslack is not None
            if self.localslack.proc.poll() is not None:
                click.echo(f"localslack exited:\n{_tail(self.localslack.log)}", err=True)
                return 1
            for child in self.replicas:
                if child.proc.poll() is not None and child.name not in reported:
                    reported.add(child.name)
                    click.echo(f"replica {child.name} exited; see {child.log}", err=True)
        return 0

    def _own_pids(self) -> set[int]:
        children = [*self.replicas, *([self.localslack] if self.localslack else [])]
        return {c.proc.pid for c in children}

    # ---- stop ----

    def stop(self) -> None:
        """Replicas first (they hand their claims over), then whatever the playbooks left
        running, then localslack and the hosts; SIGKILL for whatever outlives its grace
        (no grace at all once `hurry` is set: a second Ctrl-C)."""
        self._stop_children(self.replicas, grace=STOP_GRACE)
        self._stop_strays(keep=self._infrastructure())
        if self.localslack is not None:
            self._stop_children([self.localslack], grace=5.0)
        if self.ssh is not None:
            self.ssh.stop()
        self._stop_strays(keep=set())

    def _stop_children(self, children: list[Child], grace: float) -> None:
        for child in children:
            procs.terminate(child.proc)
        deadline = time.monotonic() + grace
        while any(c.proc.poll() is None for c in children):
            if self.hurry.is_set() or time.monotonic() > deadline:
                for child in children:
                    procs.reap(child.proc, 0)
                return
            time.sleep(0.05)

    def _infrastructure(self) -> set[int]:
        keep = {self.localslack.proc.pid} if self.localslack else set()
        if self.ssh is not None:
            keep |= {d.proc.pid for d in self.ssh.daemons if d.proc is not None}
        return keep

    def _stop_strays(self, keep: set[int]) -> None:
        """SIGTERM, then SIGKILL, every descendant except `keep` (and what runs under it,
        which is stopped with it: an sshd's sessions, say)."""
        mine = os.getpid()
        kept = keep | {p for k in keep for p in procs.descendants(k)}
        strays = [p for p in procs.descendants(mine) if p not in kept]
        procs.signal_all(strays, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        while any(procs.alive(p) for p in strays) and time.monotonic() < deadline:
            procs.reap_orphans(self._own_pids())
            time.sleep(0.05)
        procs.signal_all([p for p in strays if procs.alive(p)], signal.SIGKILL)
        procs.reap_orphans(self._own_pids())


def _directory(wanted: Path | None) -> Path:
    if wanted is None:
        return Path(tempfile.mkdtemp(prefix="troupe-sandbox-"))
    if wanted.exists() and any(wanted.iterdir()):
        raise InputError(f"{wanted} is not empty; the sandbox needs an empty or new directory")
    wanted.mkdir(parents=True, exist_ok=True)
    return wanted.resolve()


def _sshd_unavailable() -> str:
    """Why real sshd hosts cannot be used here ("" if they can)."""
    if os.geteuid() != 0:
        return "the sandbox is not running as root (it adds a login user and starts sshd)"
    if not Path("/usr/sbin/sshd").exists():
        return "openssh-server is not installed (apt-get install openssh-server)"
    return ""


def _wait_localslack(child: Child) -> str:
    """localslack's URL once it answers; its own message if it could not start."""
    port_line = "localslack "
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            said = _tail(child.log, 20)
            hint = "\n(another port: --port N, or --port 0 for a free one)"
            raise SandboxError(
                f"localslack could not start:\n{said}" + (hint if "cannot listen" in said else "")
            )
        for line in _tail(child.log, 50).splitlines():
            if line.startswith(port_line) and " on http://" in line:
                url = line.rsplit(" on ", 1)[1].strip()
                with contextlib.suppress(requests.RequestException):
                    if requests.get(url + "/web/workspace", timeout=2).ok:
                        return url
        time.sleep(0.1)
    raise SandboxError(f"localslack did not answer within {START_TIMEOUT:g}s; see {child.log}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---- the command ---------------------------------------------------------------------------


@click.command()
@click.option("--replicas", default=3, show_default=True, type=click.IntRange(1, 26))
@click.option("--hosts", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--port", default=8310, show_default=True, type=click.IntRange(0, 65535))
@click.option("--shared-app", is_flag=True, help="All replicas share one Slack app.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write troupe.yaml, the playbooks, hosts and logs (default: a new temp dir).",
)
@click.option(
    "--fleet",
    type=click.Choice(["auto", "ssh", "local"]),
    default="auto",
    show_default=True,
    help="auto: sshd hosts on 127.0.1.x when root with openssh-server, else local hosts.",
)
@click.option(
    "--rate-limits",
    default="1",
    show_default=True,
    help="localslack's rate limits: 'off', or a factor (1 = Slack's tiers).",
)
@click.option(
    "--playbooks",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Playbooks to copy in (default: this checkout's playbooks/).",
)
def sandbox(
    replicas: int,
    hosts: int,
    port: int,
    shared_app: bool,
    directory: Path | None,
    fleet: FleetMode,
    rate_limits: str,
    playbooks: Path | None,
) -> None:
    """Run localslack with a web chat page, replicas and a local fleet; Ctrl-C stops it all."""
    if shared_app and replicas > MAX_SHARED:
        raise InputError(f"--shared-app allows at most {MAX_SHARED} replicas (Slack's limit)")
    options = Options(
        replicas,
        hosts,
        port,
        shared_app,
        directory,
        fleet,
        rate_limits,
        playbooks or default_playbooks(),
    )
    box = Sandbox(options)
    stop = threading.Event()
    phase = ["starting"]

    def on_signal(signum: int, frame: object) -> None:
        if phase[0] == "starting":
            raise KeyboardInterrupt  # out of start(), into the stop below
        if phase[0] == "stopping":
            box.hurry.set()  # a second Ctrl-C: no more grace periods
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    click.echo(f"starting the sandbox in {box.dir} ...")
    code = 130
    try:
        box.start()
        click.echo(box.banner(), nl=True)
        phase[0] = "running"
        code = box.watch(stop)
    finally:
        phase[0] = "stopping"
        click.echo("stopping: replicas hand over their claims, then everything else stops ...")
        box.stop()
        click.echo("sandbox stopped")
    if code:
        raise SystemExit(code)
