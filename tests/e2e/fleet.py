"""The whole fleet as real processes, for end-to-end tests.

- `LocalSlack`: `troupe localslack --workspace FILE --port N ...` on a free loopback port,
  with its admin endpoints (messages, pins, reactions, calls, faults, socket drops).
- `Fleet`: a directory with troupe.yaml, playbooks and `connection: local` hosts (each a
  directory), and N replicas, each `python -m troupe.cli run -c troupe.yaml --replica NAME`
  with its tokens in the environment, output to a log file, stopped by PID.
- `Person`: someone in the channel, posting with a real slack_sdk WebClient.
- `Thread`: one command and its replies, parsed the way a person reads them (claim
  records, journal entries, done records, reactions) — independently of troupe.claims, so
  the tests check the protocol's visible state rather than reuse its parser.

Topologies: one app per replica (every replica its own bot user and tokens), or one shared
app (every replica the same tokens; Slack hands each event to one connection).

Playbooks written into every fleet directory:

- `ledger` (hosts `ledger`, serial 1): appends `{{ id }}` to `<host>/ledger`.
- `slow` (hosts `slow`, serial 1): per host, `sleep {{ pause }}` (default 1), then append
  `{{ id }}` to the ledger.

Every task also writes a line to a shared trace file: id, host, task, the replica (from
the environment variable E2E_REPLICA the harness sets) and the time, so a test can tell
which replica started which step when.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml
from slack_sdk import WebClient

from tests.integration import helpers
from troupe import procs
from troupe.chat import retry_handlers
from troupe.procs import localslack_argv, replica_argv, replica_env, spawn

CHANNEL = "C0E2EOPS01"
TEAM = "T0E2E"
PERSON_ID = "U0E2EALICE"
PERSON_TOKEN = "xoxp-e2e-alice"
# Everyone else in the channel (the ChatOps tests give them roles): name -> (ID, token).
PEOPLE = {
    "alice": (PERSON_ID, PERSON_TOKEN),
    "bob": ("U0E2EBOB", "xoxp-e2e-bob"),
    "carol": ("U0E2ECAROL", "xoxp-e2e-carol"),
    "mallory": ("U0E2EMALLORY", "xoxp-e2e-mallory"),
}
PREFIX = "troupe"
DONE_EMOJI = {"white_check_mark", "x"}

# Process helpers shared with `troupe sandbox` (troupe/procs.py); tests import them from here.
TROUPE = procs.TROUPE
free_port = procs.free_port
terminate = procs.terminate
stop_process = procs.stop_process
reap = procs.reap
poll = helpers.poll  # the tests' one way of waiting


# ---- files ---------------------------------------------------------------------------------


def tail(path: Path, lines: int = 150) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


# ---- who is who ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """An app: its bot user and tokens. Shared by every replica in a shared-app fleet."""

    app_id: str
    user_id: str
    bot_token: str
    app_token: str


def identities(names: Iterable[str], shared: bool) -> dict[str, Identity]:
    """One app per replica, or one app for all of them."""
    if shared:
        one = Identity("A0E2ESHARED", "U0E2ESHARED", "xoxb-e2e-shared", "xapp-e2e-shared")
        return dict.fromkeys(names, one)
    return {
        name: Identity(f"A0E2E{i}", f"U0E2EBOT{i}", f"xoxb-e2e-{i}", f"xapp-e2e-{i}")
        for i, name in enumerate(names, 1)
    }


def workspace(apps: Iterable[Identity]) -> dict[str, Any]:
    unique = list({a.app_id: a for a in apps}.values())
    return {
        "team": {"id": TEAM, "name": "e2e"},
        "users": [{"id": i, "name": n, "token": t} for n, (i, t) in PEOPLE.items()],
        "channels": [
            {
                "id": CHANNEL,
                "name": "ops",
                "members": [*(i for i, _ in PEOPLE.values()), *(a.user_id for a in unique)],
            }
        ],
        "apps": [
            {
                "id": a.app_id,
                "name": a.app_id.lower(),
                "bot_user_id": a.user_id,
                "bot_token": a.bot_token,
                "app_token": a.app_token,
                "signing_secret": f"secret-{a.app_id.lower()}",
            }
            for a in unique
        ],
    }


# ---- the channel as a person reads it --------------------------------------------------------

_CLAIM = re.compile(
    r"^:lock: claimed by \*(?P<replica>[^*]+)\* · generation (?P<gen>\d+) · "
    r"lease until (?P<until>\S+Z)"
)
_JOURNAL = re.compile(r"^:notebook: batch (?P<batch>\d+) done · generation (?P<gen>\d+) · ")
_DONE = re.compile(r"^:(white_check_mark|x): (done|failed)\b")
_LOST = re.compile(r"^:octagonal_sign: (?P<replica>\S+) stopped: ")


@dataclass(frozen=True)
class ClaimSeen:
    replica: str
    generation: int
    until: float  # lease expiry, epoch seconds
    ts: str  # the record's ts: when it was first posted


@dataclass(frozen=True)
class JournalSeen:
    batch: int
    generation: int
    hosts: tuple[str, ...]
    ts: str


@dataclass
class Thread:
    parent: dict[str, Any]
    replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ts(self) -> str:
        return str(self.parent["ts"])

    def texts(self) -> list[str]:
        return [str(m.get("text", "")) for m in self.replies]

    @property
    def claims(self) -> list[ClaimSeen]:
        out = []
        for m in self.replies:
            if match := _CLAIM.match(m.get("text", "")):
                until = datetime.strptime(match["until"], "%Y-%m-%dT%H:%M:%S.%fZ")
                stamp = until.replace(tzinfo=UTC).timestamp()
                out.append(ClaimSeen(match["replica"], int(match["gen"]), stamp, m["ts"]))
        return out

    @property
    def owner(self) -> ClaimSeen | None:
        """The winner of the newest generation: its record with the lowest ts."""
        claims = self.claims
        if not claims:
            return None
        newest = max(c.generation for c in claims)
        return min((c for c in claims if c.generation == newest), key=lambda c: float(c.ts))

    @property
    def journal(self) -> list[JournalSeen]:
        out = []
        for m in self.replies:
            text = m.get("text", "")
            if match := _JOURNAL.match(text):
                hosts = text.split(" · ")[2]
                out.append(
                    JournalSeen(
                        int(match["batch"]), int(match["gen"]), tuple(hosts.split(", ")), m["ts"]
                    )
                )
        return out

    @property
    def done_records(self) -> list[str]:
        return [t for t in self.texts() if _DONE.match(t)]

    @property
    def lost_records(self) -> list[str]:
        return [t for t in self.texts() if _LOST.match(t)]

    def reactions(self) -> dict[str, list[str]]:
        return {r["name"]: list(r.get("users", [])) for r in self.parent.get("reactions", [])}

    def dump(self) -> str:
        lines = [f"[{self.ts}] {self.parent.get('text')} reactions={self.reactions()}"]
        lines += [
            f"    [{m['ts']}] {m.get('user')}: {m.get('text', '')[:160]}" for m in self.replies
        ]
        return "\n".join(lines)


def threads(messages: list[dict[str, Any]]) -> dict[str, Thread]:
    """/admin/messages (oldest first) -> every top-level message with its replies."""
    out: dict[str, Thread] = {}
    for m in messages:
        parent = m.get("thread_ts", m["ts"])
        if parent == m["ts"]:
            out[m["ts"]] = Thread(m)
        elif parent in out:
            out[parent].replies.append(m)
    return out


# ---- localslack ---------------------------------------------------------------------------


class LocalSlack:
    """`troupe localslack` as a process on a free port, with its admin endpoints."""

    def __init__(self, workdir: Path, apps: Iterable[Identity], flags: Iterable[str]) -> None:
        self.workdir = workdir
        self.workspace_file = workdir / "workspace.yaml"
        self.workspace_file.write_text(yaml.safe_dump(workspace(apps), sort_keys=False))
        self.flags = list(flags)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = self.url + "/api/"
        self.log_path = workdir / "localslack.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._http = requests.Session()

    def start(self) -> LocalSlack:
        argv = localslack_argv(self.workspace_file, self.port, self.flags)
        self.proc = spawn(argv, self.log_path)
        poll(self._up, timeout=20, what="localslack to start", interval=0.1, explain=self.log)
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"localslack exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return self._http.get(self.url + "/", timeout=2).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)

    def log(self) -> str:
        return tail(self.log_path, 60)

    # ---- admin endpoints (never rate-limited, never faulted) ----

    def admin(self, path: str, **params: str) -> Any:
        response = self._http.get(f"{self.url}/admin/{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def messages(self, thread_ts: str | None = None) -> list[dict[str, Any]]:
        params = {"channel": CHANNEL} | ({"thread_ts": thread_ts} if thread_ts else {})
        return list(self.admin("messages", **params))

    def threads(self) -> dict[str, Thread]:
        return threads(self.messages())

    def thread(self, ts: str) -> Thread:
        return threads(self.messages(ts))[ts]

    def pins(self) -> list[str]:
        return [p["ts"] for p in self.admin("pins", channel=CHANNEL)]

    def calls(self) -> dict[str, dict[str, int]]:
        return dict(self.admin("calls"))

    def connections(self) -> dict[str, int]:
        return dict(self.admin("connections"))

    def put_faults(self, faults: dict[str, Any]) -> None:
        response = self._http.put(f"{self.url}/admin/faults", json=faults, timeout=10)
        assert response.ok and response.json()["ok"], response.text

    def drop_sockets(self) -> int:
        response = self._http.post(f"{self.url}/admin/sockets/drop", timeout=10)
        response.raise_for_status()
        return int(response.json()["dropped"])


# ---- a person ----------------------------------------------------------------------------


class Person:
    """Alice in #ops, with a real WebClient that rides out rate limits and injected errors."""

    def __init__(self, api_url: str, name: str = "alice") -> None:
        # Troupe's own retry policy, with patience for real rate limits (a person posts
        # many commands in a burst; injected errors have no effect, so a re-post is safe).
        handlers = retry_handlers(patience=100)
        self.user_id, token = PEOPLE[name]
        self.client = WebClient(token=token, base_url=api_url, retry_handlers=handlers)
        self.api_url = api_url

    def other(self, name: str) -> Person:
        return Person(self.api_url, name)

    def say(self, text: str, thread_ts: str | None = None) -> str:
        reply = self.client.chat_postMessage(channel=CHANNEL, text=text, thread_ts=thread_ts)
        return str(reply["ts"])

    def click(self, ts: str, action_id: str) -> None:
        """Click a Block Kit button on message `ts` (localslack's stand-in for Slack's UI)."""
        self.client.api_call(
            "localslack.click", json={"channel": CHANNEL, "ts": ts, "action_id": action_id}
        )

    def react(self, ts: str, name: str) -> None:
        self.client.reactions_add(channel=CHANNEL, timestamp=ts, name=name)

    def deploy(self, playbook: str, command_id: str, *args: str) -> str:
        """`troupe deploy PLAYBOOK id=ID ARGS...` (args: `to HOSTS`, `key=value`)."""
        return self.say(" ".join([PREFIX, "deploy", playbook, *args, f"id={command_id}"]))


# ---- the fleet ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timings:
    """The replicas' clocks, in seconds: short, so that takeovers happen within seconds."""

    lease: float = 3.0
    heartbeat: float = 1.0
    settle: float = 0.3
    orphan_grace: float = 5.0
    sweep_interval: float = 1.0


LEDGER_PLAYBOOK = """\
name: ledger
description: append the command's id to every host's ledger, one host per batch
hosts: ledger
vars:
  id: {required: true, pattern: '^[a-z0-9-]+$'}
strategy: {rolling: {serial: 1}}
tasks:
  - name: append
    run: >-
      echo {{ id }} {{ host.name }} append "$E2E_REPLICA" "$(date +%s.%N)" >> {{ host.vars.trace }}
      && echo {{ id }} >> {{ host.vars.root }}/ledger
"""

SLOW_PLAYBOOK = """\
name: slow
description: one host per batch, `pause` seconds of work on each, then the ledger
hosts: slow
vars:
  id: {required: true, pattern: '^[a-z0-9-]+$'}
  pause: {default: 1, pattern: '^[0-9]+$'}
strategy: {rolling: {serial: 1}}
tasks:
  - name: work
    run: >-
      echo {{ id }} {{ host.name }} work "$E2E_REPLICA" "$(date +%s.%N)" >> {{ host.vars.trace }}
      && sleep {{ pause }}
  - name: append
    run: >-
      echo {{ id }} {{ host.name }} append "$E2E_REPLICA" "$(date +%s.%N)" >> {{ host.vars.trace }}
      && echo {{ id }} >> {{ host.vars.root }}/ledger
"""


@dataclass(frozen=True)
class Step:
    """One line of the trace file: which replica started which task where, and when."""

    command_id: str
    host: str
    task: str
    replica: str
    at: float


@dataclass
class Replica:
    name: str
    identity: Identity
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def log(self, lines: int = 150) -> str:
        return tail(self.log_path, lines)


class Fleet:
    """A fleet directory (troupe.yaml, playbooks, hosts) and its replica processes."""

    def __init__(
        self,
        root: Path,
        slack: LocalSlack,
        who: dict[str, Identity],
        ledger_hosts: int = 2,
        slow_hosts: int = 4,
        timings: Timings | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """`extra`: more config sections (merged in), and `playbooks` (name -> text) and
        `web_hosts` (how many local hosts in group `web`) for the ChatOps tests."""
        self.extra = dict(extra or {})
        self.web_hosts = [f"web{i:02d}" for i in range(1, self.extra.pop("web_hosts", 0) + 1)]
        self.extra_playbooks: dict[str, str] = self.extra.pop("playbooks", {})
        self.root = root
        self.slack = slack
        self.timings = timings or Timings()
        self.replicas = {
            name: Replica(name, ident, root / f"{name}.log") for name, ident in who.items()
        }
        self.ledger_hosts = [f"ledger{i}" for i in range(1, ledger_hosts + 1)]
        self.slow_hosts = [f"slow{i}" for i in range(1, slow_hosts + 1)]
        self.trace_path = root / "trace"
        self.config_path = root / "troupe.yaml"
        self._write()

    @property
    def bot_users(self) -> set[str]:
        return {r.identity.user_id for r in self.replicas.values()}

    def _write(self) -> None:
        hosts: dict[str, Any] = {}
        for name in self.ledger_hosts + self.slow_hosts + self.web_hosts:
            (self.root / "hosts" / name).mkdir(parents=True)
            root = str(self.root / "hosts" / name)
            hosts[name] = {
                "connection": "local",
                "vars": {"root": root, "trace": str(self.trace_path)},
            }
        t = self.timings
        config = {
            "inventory": {
                "hosts": hosts,
                "groups": {"ledger": self.ledger_hosts, "slow": self.slow_hosts}
                | ({"web": self.web_hosts} if self.web_hosts else {}),
            },
            "execution": {"forks": 10, "playbooks_dir": "playbooks"},
            "slack": {
                "channel": CHANNEL,
                "api_url": self.slack.api_url,
                "fleet": sorted(self.bot_users),
                "prefix": PREFIX,
                "sweep_interval": t.sweep_interval,
                "lease": {
                    "seconds": t.lease,
                    "heartbeat": t.heartbeat,
                    "settle": t.settle,
                    "orphan_grace": t.orphan_grace,
                },
            },
        }
        # Unpaced thread posts: these tests run hundreds of commands (the ChatOps tests,
        # which bring their own `chatops`, keep Slack's pace).
        config["chatops"] = {"post_interval": 0}
        config |= self.extra
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        playbooks = self.root / "playbooks"
        playbooks.mkdir()
        (playbooks / "ledger.yaml").write_text(LEDGER_PLAYBOOK)
        (playbooks / "slow.yaml").write_text(SLOW_PLAYBOOK)
        for name, text in self.extra_playbooks.items():
            (playbooks / f"{name}.yaml").write_text(text)

    # ---- processes ----

    def start(self, names: Iterable[str] | None = None) -> None:
        """Start replicas (default: all) and wait until each is connected and ready."""
        chosen = [self.replicas[n] for n in (names or self.replicas)]
        for replica in chosen:
            self._spawn(replica)
        for replica in chosen:
            poll(
                functools.partial(self._ready, replica),
                timeout=30,
                what=f"replica {replica.name} to be ready",
                interval=0.1,
                explain=replica.log,
            )
        poll(
            self._all_connected,
            timeout=20,
            what="every replica's Socket Mode connection",
            explain=lambda: str(self.slack.connections()),
        )

    def _spawn(self, replica: Replica) -> None:
        ident = replica.identity
        env = replica_env(ident.bot_token, ident.app_token, {"E2E_REPLICA": replica.name})
        # The replica itself, not its supervisor: tests kill and stop the process they see.
        argv = replica_argv(self.config_path, replica.name)
        replica.proc = spawn(argv, replica.log_path, env=env, cwd=self.root)

    def _ready(self, replica: Replica) -> bool:
        if not replica.alive():
            raise AssertionError(f"replica {replica.name} exited:\n{replica.log()}")
        return f"{replica.name} ready in" in replica.log(400)

    def _all_connected(self) -> bool:
        wanted = Counter(r.identity.app_id for r in self.replicas.values() if r.alive())
        connected = self.slack.connections()
        return all(connected.get(app, 0) >= n for app, n in wanted.items())

    def stop(self) -> None:
        """SIGTERM every replica at once (each hands over its claim), then reap them."""
        procs = [r.proc for r in self.replicas.values() if r.proc is not None]
        for proc in procs:
            terminate(proc)
        for proc in procs:
            reap(proc, grace=self.timings.lease + 5)

    def logs(self) -> str:
        parts = [f"fleet directory: {self.root}"]
        for replica in self.replicas.values():
            state = (
                "running" if replica.alive() else f"exit {replica.proc and replica.proc.returncode}"
            )
            parts.append(f"----- {replica.name} ({state}) -----\n{replica.log()}")
        parts.append(f"----- localslack -----\n{self.slack.log()}")
        return "\n".join(parts)

    # ---- what the hosts saw ----

    def ledger(self, host: str) -> Counter[str]:
        path = self.root / "hosts" / host / "ledger"
        if not path.exists():
            return Counter()
        return Counter(line.strip() for line in path.read_text().splitlines() if line.strip())

    def trace(self) -> list[Step]:
        if not self.trace_path.exists():
            return []
        steps = []
        for line in self.trace_path.read_text().splitlines():
            fields = line.split()
            if len(fields) == 5:  # a line being written right now is skipped
                command_id, host, task, replica, at = fields
                steps.append(Step(command_id, host, task, replica, float(at)))
        return steps

    # ---- checks ----

    def wait_done(self, commands: Iterable[str], timeout: float) -> dict[str, Thread]:
        """Wait until every command ts has a ✅/❌ from a fleet bot; return the threads."""
        wanted = set(commands)
        seen: dict[str, Thread] = {}

        def finished_one(ts: str) -> bool:
            return ts in seen and _done_reaction(seen[ts], self.bot_users) is not None

        def finished() -> bool:
            seen.clear()
            seen.update(self.slack.threads())
            return all(finished_one(ts) for ts in wanted)

        def explain() -> str:
            pending = [ts for ts in sorted(wanted) if not finished_one(ts)]
            shown = "\n".join(seen[ts].dump() if ts in seen else ts for ts in pending[:5])
            return f"{len(pending)} of {len(wanted)} commands not done, e.g.:\n{shown}"

        poll(finished, timeout, f"{len(wanted)} commands to be done", 0.5, explain)
        return {ts: seen[ts] for ts in wanted}

    def wait_no_pins(self, timeout: float = 15) -> None:
        poll(
            lambda: not self.slack.pins(),
            timeout,
            "every pin to be released",
            explain=lambda: f"pinned: {self.slack.pins()}",
        )

    def assert_exactly_once(self, ids: Iterable[str], hosts: Iterable[str]) -> None:
        """Every host's ledger holds each id exactly once, and nothing else."""
        wanted = set(ids)
        problems = []
        for host in hosts:
            counts = self.ledger(host)
            twice = {i: n for i, n in counts.items() if n > 1}
            missing = sorted(wanted - set(counts))
            extra = sorted(set(counts) - wanted)
            if twice or missing or extra:
                problems.append(
                    f"{host}: more than once {twice}, missing {missing}, unknown {extra}"
                )
        if problems:
            suspects = {i for p in problems for i in re.findall(r"'([a-z0-9-]+)'", p)}
            shown = [
                t.dump()
                for t in self.slack.threads().values()
                if any(str(t.parent.get("text", "")).endswith(f"id={i}") for i in suspects)
            ]
            raise AssertionError(
                "ledgers are not exactly once:\n" + "\n".join(problems + shown[:10])
            )


# ---- waiting for what a test needs to see -------------------------------------------------


def wait_step(fleet: Fleet, command_id: str, host: str, task: str, replica: str) -> Step:
    """Wait until `replica` has started `task` on `host` (seen in the trace file)."""

    def started() -> Step | None:
        wanted = (command_id, host, task, replica)
        return next(
            (s for s in fleet.trace() if (s.command_id, s.host, s.task, s.replica) == wanted),
            None,
        )

    return poll(
        started, 15, f"{replica} to start {task} on {host}", 0.02, lambda: str(fleet.trace())
    )


def first_owner(fleet: Fleet, ts: str, journaled: bool = False) -> ClaimSeen:
    """Wait for the generation 1 owner (and, if asked, its first journal entry)."""

    def owned() -> ClaimSeen | None:
        thread = fleet.slack.thread(ts)
        return thread.owner if thread.owner and (thread.journal or not journaled) else None

    owner = poll(owned, 30, "a claim" + (" and batch 1 journaled" if journaled else ""), 0.05)
    assert owner.generation == 1
    return owner


def lease_of(thread: Thread, claim: ClaimSeen) -> float:
    """The lease expiry `claim`'s record shows now (heartbeats edit it in place)."""
    return next(c.until for c in thread.claims if c.ts == claim.ts)


def _done_reaction(thread: Thread, bots: set[str]) -> str | None:
    for name, users in thread.reactions().items():
        if name in DONE_EMOJI and bots & set(users):
            return name
    return None


def assert_all_succeeded(done: dict[str, Thread], bots: set[str]) -> None:
    """Each command: ✅ (no ❌) and exactly one done record in its thread."""
    bad = []
    for thread in done.values():
        reaction = _done_reaction(thread, bots)
        records = thread.done_records
        if reaction != "white_check_mark" or len(records) != 1 or "x" in thread.reactions():
            bad.append(thread.dump())
    assert not bad, f"{len(bad)} commands did not end with one ✅ done:\n" + "\n".join(bad[:5])
