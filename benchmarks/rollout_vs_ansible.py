"""Rolling update over real sshd hosts: `troupe play` against `ansible-playbook`.

The same rolling update (4 steps, one of which sleeps 0.5 s, ``serial: 5``) over the same
20 sshd hosts, run with ``troupe play`` and with ``ansible-playbook`` (ansible-core from
PyPI, pipelining on, forks 5), alternating, several runs each. The lower bound is the sum of
the sleeps over the batches: 20 hosts / 5 per batch x 0.5 s = 2.0 s.

Set-up (the output says it again, with versions):

- hosts: ``troupe/sshfleet.py``'s ``SshFleet``: one real sshd per host on
  127.0.1.2.., one shared port, started and stopped by this benchmark (``stop()`` in a
  ``finally``, by PID). Every tool logs in as ``troupe-test``, whose login shell is
  /bin/sh (dash: no rc files), with the fleet's generated ed25519 key.
- Troupe: ``[sys.executable, "-m", "troupe.cli", "play", PLAYBOOK, "-c", troupe.yaml]``,
  ``execution.forks: 5`` (with ``serial: 5`` a batch is 5 hosts, so forks >= 5 is all that
  matters; 5 for parity with Ansible). Tasks are ``run:`` commands, each with Troupe's
  default 5 min timeout (so each runs under the remote ``timeout`` command).
- Ansible: the venv's ``ansible-playbook``, ``ansible.cfg`` with ``pipelining = True``,
  ``forks = 5``, ``host_key_checking = False``, ``gather_facts: false``, tasks
  ``ansible.builtin.command`` / ``shell``, ``ansible_python_interpreter=/usr/bin/python3``,
  and OpenSSH with Ansible's default multiplexing (``ControlMaster=auto``,
  ``ControlPersist=60s``) in a fresh control directory per run; the masters a run leaves
  behind are told to exit (``ssh -O exit``) after it, so no run reuses another's
  connections (Troupe cannot: its connections end with its process).
- Order: one untimed warm-up run of each (``--no-warmup`` skips it), then ``--runs``
  rounds; each round runs both tools, the first tool alternating between rounds.
- Each run starts from hosts without the file the third step writes, and must leave it on
  every host with exit status 0, or the benchmark stops with exit status 1.

Figures:

- wall clock around each subprocess (``time.perf_counter``), median over the runs;
- local CPU: ``resource.getrusage(RUSAGE_CHILDREN)`` deltas around the subprocess (the
  tool's process and the processes it waited for: Ansible's forks and ``ssh`` clients,
  not its daemonised ControlPersist masters);
- machine CPU: the whole machine's busy CPU time from /proc/stat over the run. The hosts
  are on this machine, so it includes sshd and the remote commands (Ansible's modules run
  Python on the target); anything else running on the machine adds to it;
- Troupe at 100 hosts with ``serial: 25`` (``forks: 25``; the bound is again 4 x 0.5 s =
  2.0 s), one run by default; its CPU seconds per host-step = troupe's process CPU /
  (hosts x 4). ``--no-100`` skips it;
- the latency of a trivial command in-process: ``troupe.remote.connect(host)``, then
  ``run("true")`` 100 times over that open connection (median and p90), plus, over
  ``FRESH_CONNECTIONS`` fresh connections, the time to connect and the first command's
  latency on the new connection;
- Troupe's start-up alone: ``python -m troupe.cli --version`` (imports, no hosts).

Goals (from the issue): Troupe at most 1.25x the lower bound and at most one fifth of
Ansible's time at ``serial: 5``; a trivial command over an open connection in 5 ms or less
(plain Fabric took about 48 ms here). The summary says met / not met; the exit status is 0
either way (1 if a run failed, 2 if ``ansible-playbook`` is missing without
``--skip-ansible``).

``--json`` also prints every figure as one JSON object on the last line (keys include
``troupe_s``, ``ansible_s`` and ``bound_s``: medians at ``serial: 5``).
``--profile N`` adds one Troupe run at 20 hosts under cProfile in every thread (the
executor's work happens in its host threads, which ``python -m cProfile`` does not see)
and prints the top N functions by own time and by cumulative time.

Run (as root: the fleet creates its user and sudo rule):
``.venv/bin/python benchmarks/rollout_vs_ansible.py [--runs N] [--json]``.
Loopback only; every subprocess has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pstats
import pwd
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))  # for troupe (run from a checkout)

from troupe.inventory import Inventory  # noqa: E402
from troupe.remote import FabricRemote, connect  # noqa: E402
from troupe.sshfleet import USER, SshFleet  # noqa: E402

HOSTS = 20
SERIAL = 5
FORKS = 5
BIG_HOSTS = 100
BIG_SERIAL = 25
STEPS = 4
SLEEP_S = 0.5
LATENCY_COMMANDS = 100
FRESH_CONNECTIONS = 10
STARTUP_RUNS = 3
RUN_TIMEOUT_S = 300.0  # per playbook run; a hung run fails the benchmark
SSH_EXIT_TIMEOUT_S = 10.0
TARGET_BOUND_RATIO = 1.25
TARGET_ANSIBLE_SHARE = 0.2  # Troupe at most one fifth of Ansible's time
TARGET_LATENCY_MS = 5.0
FABRIC_LATENCY_MS = 48.0  # plain Fabric, measured on this kind of machine
PYTHON_INTERPRETER = "/usr/bin/python3"  # Ansible's interpreter on the hosts
RESULT_FILE = "f"  # what the third step writes in each host's directory


def bound_s(hosts: int, serial: int) -> float:
    """The physical floor: every batch waits for its sleep, and nothing else."""
    return -(-hosts // serial) * SLEEP_S


# ---- what runs: the files each tool reads ---------------------------------------------------


def troupe_config(inventory: Inventory, forks: int) -> dict[str, Any]:
    return {
        "inventory": inventory.model_dump(mode="json", exclude_defaults=True),
        "execution": {"forks": forks},
    }


def troupe_playbook(serial: int) -> dict[str, Any]:
    return {
        "name": "bench-rolling",
        "description": "rollout_vs_ansible benchmark",
        "hosts": "web",
        "strategy": {"rolling": {"serial": serial}},
        "tasks": [
            {"name": "first", "run": "true"},
            {"name": "sleep", "run": f"sleep {SLEEP_S}"},
            {"name": "write", "run": "echo x > {{ host.vars.root }}/" + RESULT_FILE},
            {"name": "last", "run": "true"},
        ],
    }


def ansible_inventory(fleet: SshFleet) -> dict[str, Any]:
    hosts = {
        d.name: {"ansible_host": d.address, "ansible_port": fleet.port, "root": str(d.root)}
        for d in fleet.daemons
    }
    return {
        "all": {
            "vars": {
                "ansible_user": USER,
                "ansible_ssh_private_key_file": str(fleet.client_key),
                "ansible_python_interpreter": PYTHON_INTERPRETER,
                "ansible_host_key_checking": False,
            },
            "children": {"web": {"hosts": hosts}},
        }
    }


def ansible_playbook(serial: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "bench-rolling",
            "hosts": "web",
            "serial": serial,
            "gather_facts": False,
            "tasks": [
                {"name": "first", "ansible.builtin.command": "true"},
                {"name": "sleep", "ansible.builtin.command": f"sleep {SLEEP_S}"},
                {
                    "name": "write",
                    "ansible.builtin.shell": "echo x > {{ root }}/" + RESULT_FILE,
                },
                {"name": "last", "ansible.builtin.command": "true"},
            ],
        }
    ]


def ansible_cfg(home: Path) -> str:
    return "\n".join(
        [
            "[defaults]",
            f"forks = {FORKS}",
            "host_key_checking = False",
            f"interpreter_python = {PYTHON_INTERPRETER}",
            f"local_tmp = {home / 'tmp'}",
            "retry_files_enabled = False",
            "nocolor = True",
            "",
            "[ssh_connection]",
            "pipelining = True",
            # Ansible's default ssh_args, plus: never write root's known_hosts, no banner.
            "ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s "
            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            "",
        ]
    )


def write_json(path: Path, data: object) -> Path:
    """JSON is YAML: both tools read these files."""
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


# ---- measuring a subprocess ---------------------------------------------------------------


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all CPUs), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class RunStats:
    tool: str
    hosts: int
    wall_s: float
    cpu_s: float
    machine_cpu_s: float


class RunFailed(RuntimeError):
    """A playbook run failed or did not do its work: the figures would mean nothing."""


def timed_run(
    tool: str, argv: list[str], cwd: Path, env: dict[str, str], log: Path, hosts: int
) -> RunStats:
    with log.open("wb") as out:
        cpu0, busy0 = children_cpu_s(), machine_busy_s()
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RunFailed(f"{tool} did not finish in {RUN_TIMEOUT_S:g}s (log: {log})") from exc
        wall = time.perf_counter() - t0
        cpu, busy = children_cpu_s() - cpu0, machine_busy_s() - busy0
    if done.returncode != 0:
        raise RunFailed(f"{tool} exited with {done.returncode}:\n{tail(log)}")
    return RunStats(tool, hosts, wall, cpu, busy)


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# ---- the two tools ------------------------------------------------------------------------


@dataclass
class Workspace:
    """Everything one fleet's runs need, in a temporary directory."""

    fleet: SshFleet
    root: Path
    serial: int
    forks: int
    env: dict[str, str]  # for the tools' processes: see tool_env
    troupe_cfg: Path = field(init=False)
    troupe_book: Path = field(init=False)
    ansible_inv: Path = field(init=False)
    ansible_book: Path = field(init=False)
    ansible_home: Path = field(init=False)
    ansible_cfg: Path = field(init=False)
    runs: int = 0

    def __post_init__(self) -> None:
        inventory = self.fleet.inventory()
        self.troupe_cfg = write_json(
            self.root / "troupe.yaml", troupe_config(inventory, self.forks)
        )
        self.troupe_book = write_json(self.root / "rolling.yaml", troupe_playbook(self.serial))
        self.ansible_inv = write_json(self.root / "hosts.yml", ansible_inventory(self.fleet))
        self.ansible_book = write_json(self.root / "site.yml", ansible_playbook(self.serial))
        self.ansible_home = self.root / "ansible-home"
        (self.ansible_home / "tmp").mkdir(parents=True)
        self.ansible_cfg = self.root / "ansible.cfg"
        self.ansible_cfg.write_text(ansible_cfg(self.ansible_home))

    @property
    def hosts(self) -> int:
        return len(self.fleet.daemons)

    def _log(self, tool: str) -> Path:
        self.runs += 1
        return self.root / f"{self.runs:02d}-{tool}.log"

    def reset(self) -> None:
        for daemon in self.fleet.daemons:
            (daemon.root / RESULT_FILE).unlink(missing_ok=True)

    def check_done(self, tool: str) -> None:
        missing = [d.name for d in self.fleet.daemons if not (d.root / RESULT_FILE).is_file()]
        if missing:
            raise RunFailed(f"{tool} exited 0 but did not write {RESULT_FILE} on {missing}")

    def troupe_argv(self) -> list[str]:
        play = ["play", str(self.troupe_book), "-c", str(self.troupe_cfg)]
        return [sys.executable, "-m", "troupe.cli", *play]

    def troupe(self) -> RunStats:
        self.reset()
        log = self._log("troupe")
        stats = timed_run("troupe", self.troupe_argv(), self.root, self.env, log, self.hosts)
        self.check_done("troupe")
        return stats

    def ansible(self, ansible_playbook_bin: Path) -> RunStats:
        self.reset()
        log = self._log("ansible")
        control = Path(tempfile.mkdtemp(prefix="cp-", dir=self.root))
        env = {
            **self.env,
            "ANSIBLE_CONFIG": str(self.ansible_cfg),
            "ANSIBLE_HOME": str(self.ansible_home),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
            "LC_ALL": "C.UTF-8",
        }
        argv = [str(ansible_playbook_bin), "-i", str(self.ansible_inv), str(self.ansible_book)]
        try:
            stats = timed_run("ansible", argv, self.root, env, log, self.hosts)
        finally:
            close_masters(control)
        self.check_done("ansible")
        return stats


def close_masters(control: Path) -> None:
    """Tell the ControlPersist masters of one Ansible run to exit (they are its processes)."""
    for sock in sorted(control.iterdir()):
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "fleet-host"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=SSH_EXIT_TIMEOUT_S,
                check=False,
            )


@contextlib.contextmanager
def started_fleet(hosts: int) -> Iterator[tuple[SshFleet, Path]]:
    """A fleet and a scratch directory; the fleet stopped and both removed at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="troupe-bench-fleet-"))
    scratch = Path(tempfile.mkdtemp(prefix="troupe-bench-"))
    fleet: SshFleet | None = None
    try:
        fleet = SshFleet(hosts, workdir)
        yield fleet, scratch
    finally:
        if fleet is not None:
            fleet.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


# ---- latency of one command ---------------------------------------------------------------


@dataclass
class Latency:
    open_median_ms: float
    connect_ms: list[float]
    first_ms: list[float]
    warm_ms: list[float]

    @property
    def connect_median_ms(self) -> float:
        return statistics.median(self.connect_ms)

    @property
    def first_median_ms(self) -> float:
        return statistics.median(self.first_ms)

    @property
    def warm_p90_ms(self) -> float:
        return percentile(self.warm_ms, 90)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def run_true(remote: Any) -> float:
    t0 = time.perf_counter()
    result = remote.run("true")
    elapsed = (time.perf_counter() - t0) * 1000
    if not result.ok:
        raise RunFailed(f"`true` exited {result.exit_code} on {remote.host.name}: {result.stderr}")
    return elapsed


def measure_latency(fleet: SshFleet) -> Latency:
    inventory = fleet.inventory()
    connect_ms: list[float] = []
    first_ms: list[float] = []
    for name in fleet.names[:FRESH_CONNECTIONS]:
        remote = connect(inventory.host(name))
        try:
            t0 = time.perf_counter()
            if isinstance(remote, FabricRemote):
                remote.open()
            connect_ms.append((time.perf_counter() - t0) * 1000)
            first_ms.append(run_true(remote))
        finally:
            remote.close()
    remote = connect(inventory.host(fleet.names[0]))
    try:
        run_true(remote)  # opens the connection: not counted
        warm = [run_true(remote) for _ in range(LATENCY_COMMANDS)]
    finally:
        remote.close()
    return Latency(statistics.median(warm), connect_ms, first_ms, warm)


# ---- start-up and profile -----------------------------------------------------------------


def troupe_startup_s(env: dict[str, str]) -> float:
    """Median wall time of `troupe --version` (after one untimed run fills the bytecode cache)."""
    times = []
    for _ in range(STARTUP_RUNS + 1):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "troupe.cli", "--version"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=True,
        )
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def tool_env(pycache: Path) -> dict[str, str]:
    """The environment of both tools: Python bytecode cached, as in an installed tool.

    Some machines set PYTHONDONTWRITEBYTECODE, and Troupe is installed editable here, so
    without this every `troupe play` would compile its own sources again (~0.1 s). The
    cache goes to a scratch directory (PYTHONPYCACHEPREFIX), not into the source tree;
    the warm-up runs fill it. Commands on the hosts do not see this environment.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# Runs the troupe CLI with one cProfile.Profile per thread (threading.setprofile installs it
# in each new thread), then merges them. The clock is each thread's CPU time: a wall clock
# would be dominated by threads blocked in recv() and select(). argv: OUT, then the CLI's.
PROFILE_SCRIPT = """
import cProfile, pstats, sys, threading, time
out, args = sys.argv[1], sys.argv[2:]
profiles = []
def start(frame, event, arg):
    prof = cProfile.Profile(time.thread_time)
    profiles.append(prof)
    prof.enable()
threading.setprofile(start)
main = cProfile.Profile(time.thread_time)
main.enable()
from troupe.cli import cli
try:
    cli.main(args=args, prog_name="troupe")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
main.disable()
threading.setprofile(None)
stats = pstats.Stats(main)
for prof in profiles:
    stats.add(prof)
stats.dump_stats(out)
sys.exit(code)
"""


def profile_troupe(space: Workspace, top: int) -> str:
    """One troupe run under a profiler in every thread: the top functions, as text."""
    out = space.root / "troupe.prof"
    space.reset()
    log = space._log("troupe-profile")
    argv = [sys.executable, "-c", PROFILE_SCRIPT, str(out), *space.troupe_argv()[3:]]
    stats = timed_run("troupe (profiled)", argv, space.root, space.env, log, space.hosts)
    space.check_done("troupe (profiled)")
    text = [
        f"profiled troupe run: {stats.wall_s:.2f}s wall, {stats.cpu_s:.2f}s CPU (profiling "
        "slows it down); times below are CPU seconds of each thread, summed over threads"
    ]
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(str(out), stream=buffer).strip_dirs().sort_stats(order).print_stats(top)
        body = buffer.getvalue()
        start = body.find("   ncalls")
        text += [f"-- top {top} by {order} (CPU, all threads) --", body[start:].rstrip()]
    return "\n".join(text)


# ---- set-up description -------------------------------------------------------------------


def version_of(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def setup_lines(ansible_bin: Path | None, runs: int, warmup: bool) -> dict[str, str]:
    shell = pwd.getpwnam(USER).pw_shell
    no_bytecode = "unset for them" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "not set"
    ansible = (
        (
            f"{version_of([str(ansible_bin), '--version'])}, pipelining on, forks {FORKS}, "
            "gather_facts off, command/shell modules, ssh ControlMaster=auto "
            f"ControlPersist=60s (fresh per run), interpreter {PYTHON_INTERPRETER}"
        )
        if ansible_bin
        else "skipped (--skip-ansible)"
    )
    return {
        "machine": f"{os.cpu_count()} CPUs, {version_of(['ssh', '-V'])}",
        "hosts": (
            f"SshFleet: one sshd per host on 127.0.1.x, login user {USER}, "
            f"login shell {shell}, ed25519 key"
        ),
        "troupe": (
            f"troupe play as a subprocess, forks {FORKS} (serial {SERIAL}), FabricRemote "
            f"(fabric {package_version('fabric')}, paramiko {package_version('paramiko')}), "
            f"python {sys.version.split()[0]}; each task under the default 5m timeout "
            "(runs in the remote `timeout` command)"
        ),
        "ansible": ansible,
        "python": (
            "tools run with bytecode caching on (PYTHONPYCACHEPREFIX in a scratch directory; "
            f"PYTHONDONTWRITEBYTECODE {no_bytecode})"
        ),
        "order": (
            f"{'one untimed warm-up each, then ' if warmup else ''}{runs} rounds, "
            "the first tool alternating"
        ),
    }


# ---- main ---------------------------------------------------------------------------------


def find_ansible() -> Path | None:
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file():
        return beside
    found = shutil.which("ansible-playbook")
    return Path(found) if found else None


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each tool (3)")
    parser.add_argument("--skip-ansible", action="store_true", help="Troupe only")
    parser.add_argument("--no-100", dest="big", action="store_false", help="skip 100 hosts")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--profile", type=int, metavar="N", default=0, help="top N functions")
    parser.add_argument("--json", action="store_true", help="figures as JSON on the last line")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    ansible_bin = None if args.skip_ansible else find_ansible()
    if not args.skip_ansible and ansible_bin is None:
        print(
            "ansible-playbook not found: install it with "
            "`.venv/bin/pip install -e '.[bench]'` (ansible-core>=2.17,<3), "
            "or run with --skip-ansible",
            file=sys.stderr,
        )
        return 2

    setup = setup_lines(ansible_bin, args.runs, args.warmup)
    print("set-up:")
    for key, value in setup.items():
        print(f"  {key:8} {value}")
    print(flush=True)

    try:
        figures = benchmark(args, ansible_bin, setup)
    except RunFailed as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    return 0


def benchmark(
    args: argparse.Namespace, ansible_bin: Path | None, setup: dict[str, str]
) -> dict[str, Any]:
    figures: dict[str, Any] = {"setup": setup, "hosts": HOSTS, "serial": SERIAL, "forks": FORKS}
    bound = bound_s(HOSTS, SERIAL)
    troupe_runs: list[RunStats] = []
    ansible_runs: list[RunStats] = []
    profile_text = ""
    big: RunStats | None = None
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="troupe-bench-pycache-") as pycache:
        env = tool_env(Path(pycache))
        startup = troupe_startup_s(env)
        with started_fleet(HOSTS) as (fleet, scratch):
            space = Workspace(fleet, scratch, SERIAL, FORKS, env)
            if args.warmup:
                space.troupe()
                if ansible_bin:
                    space.ansible(ansible_bin)
            for round_ in range(args.runs):
                order = ["troupe", "ansible"] if round_ % 2 == 0 else ["ansible", "troupe"]
                for tool in order:
                    if tool == "troupe":
                        run = space.troupe()
                        troupe_runs.append(run)
                    elif ansible_bin:
                        run = space.ansible(ansible_bin)
                        ansible_runs.append(run)
                    else:
                        continue
                    print(
                        f"  round {round_ + 1} {run.tool:8} {run.wall_s:6.2f}s wall, "
                        f"{run.cpu_s:6.2f}s local CPU, {run.machine_cpu_s:6.2f}s machine CPU",
                        flush=True,
                    )
            latency = measure_latency(fleet)
            if args.profile:
                profile_text = profile_troupe(space, args.profile)

        if args.big:
            with started_fleet(BIG_HOSTS) as (fleet, scratch):
                big = Workspace(fleet, scratch, BIG_SERIAL, BIG_SERIAL, env).troupe()
    load_after = load_average()

    def med(runs: list[RunStats], key: str) -> float:
        return float(statistics.median(float(getattr(r, key)) for r in runs))

    troupe_s = med(troupe_runs, "wall_s")
    troupe_cpu = med(troupe_runs, "cpu_s")
    print()
    print(f"load average (1, 5, 15 min): {load_before} before, {load_after} after")
    figures.update(load_before=load_before, load_after=load_after)
    print()
    print(f"rolling update, {HOSTS} hosts, serial {SERIAL}, {STEPS} steps (one sleeps {SLEEP_S}s)")
    print(f"  lower bound (sleeps over batches)   {bound:6.2f}s")
    print(
        f"  troupe play      median {troupe_s:6.2f}s  "
        f"(runs: {', '.join(f'{r.wall_s:.2f}' for r in troupe_runs)}), "
        f"local CPU {troupe_cpu:.2f}s, machine CPU {med(troupe_runs, 'machine_cpu_s'):.2f}s"
    )
    figures.update(
        bound_s=bound,
        troupe_s=troupe_s,
        troupe_runs_s=[r.wall_s for r in troupe_runs],
        troupe_cpu_s=troupe_cpu,
        troupe_machine_cpu_s=med(troupe_runs, "machine_cpu_s"),
        troupe_cpu_per_host_step_ms_20=1000 * troupe_cpu / (HOSTS * STEPS),
        troupe_startup_s=startup,
        troupe_bound_ratio=troupe_s / bound,
        ansible_s=None,
        troupe_ansible_ratio=None,
    )
    goals: dict[str, bool] = {"bound": troupe_s <= TARGET_BOUND_RATIO * bound}
    if ansible_runs:
        ansible_s = med(ansible_runs, "wall_s")
        print(
            f"  ansible-playbook median {ansible_s:6.2f}s  "
            f"(runs: {', '.join(f'{r.wall_s:.2f}' for r in ansible_runs)}), "
            f"local CPU {med(ansible_runs, 'cpu_s'):.2f}s, "
            f"machine CPU {med(ansible_runs, 'machine_cpu_s'):.2f}s"
        )
        ratio = troupe_s / ansible_s
        print(
            f"  Troupe / Ansible                    {ratio:6.3f}  "
            f"(Ansible takes {ansible_s / troupe_s:.1f}x as long)"
        )
        figures.update(
            ansible_s=ansible_s,
            ansible_runs_s=[r.wall_s for r in ansible_runs],
            ansible_cpu_s=med(ansible_runs, "cpu_s"),
            ansible_machine_cpu_s=med(ansible_runs, "machine_cpu_s"),
            troupe_ansible_ratio=ratio,
        )
        goals["ansible"] = ratio <= TARGET_ANSIBLE_SHARE
    print(f"  Troupe / lower bound                {troupe_s / bound:6.3f}")
    print(f"  troupe start-up alone (--version)   {startup:6.2f}s")
    print(
        f"  troupe CPU per host-step            {ms(troupe_cpu / (HOSTS * STEPS))} "
        "(process CPU incl. start-up / hosts x steps)"
    )

    if big is not None:
        big_bound = bound_s(BIG_HOSTS, BIG_SERIAL)
        per_step = big.cpu_s / (BIG_HOSTS * STEPS)
        print()
        print(f"troupe play, {BIG_HOSTS} hosts, serial {BIG_SERIAL}, forks {BIG_SERIAL}, one run")
        print(
            f"  wall {big.wall_s:.2f}s (lower bound {big_bound:.2f}s, "
            f"ratio {big.wall_s / big_bound:.3f}), local CPU {big.cpu_s:.2f}s, "
            f"machine CPU {big.machine_cpu_s:.2f}s"
        )
        print(f"  CPU per host-step                   {ms(per_step)}")
        figures.update(
            troupe_100_s=big.wall_s,
            bound_100_s=big_bound,
            troupe_100_cpu_s=big.cpu_s,
            troupe_100_machine_cpu_s=big.machine_cpu_s,
            cpu_per_host_step_s=per_step,
        )

    print()
    print(f"trivial command (`true`), in-process troupe.remote.connect(host) as {USER}")
    print(
        f"  over an open connection, {LATENCY_COMMANDS}x:      median "
        f"{latency.open_median_ms:.2f} ms, p90 {latency.warm_p90_ms:.2f} ms "
        f"(plain Fabric: ~{FABRIC_LATENCY_MS:g} ms)"
    )
    print(
        f"  fresh connections ({FRESH_CONNECTIONS}):          connect median "
        f"{latency.connect_median_ms:.1f} ms, first command median "
        f"{latency.first_median_ms:.2f} ms (max {max(latency.first_ms):.2f} ms)"
    )
    figures.update(
        latency_median_ms=latency.open_median_ms,
        latency_p90_ms=latency.warm_p90_ms,
        connect_median_ms=latency.connect_median_ms,
        first_command_median_ms=latency.first_median_ms,
        first_command_max_ms=max(latency.first_ms),
    )
    goals["latency"] = latency.open_median_ms <= TARGET_LATENCY_MS

    print()
    print("goals:")
    print(
        f"  troupe <= {TARGET_BOUND_RATIO}x lower bound: {verdict(goals['bound'])} "
        f"({troupe_s / bound:.3f}x)"
    )
    if "ansible" in goals:
        print(
            f"  troupe <= 1/{1 / TARGET_ANSIBLE_SHARE:g} of Ansible's time: "
            f"{verdict(goals['ansible'])} ({figures['troupe_ansible_ratio']:.3f})"
        )
    else:
        print("  troupe <= 1/5 of Ansible's time: not measured (--skip-ansible)")
    print(
        f"  trivial command <= {TARGET_LATENCY_MS:g} ms: {verdict(goals['latency'])} "
        f"({latency.open_median_ms:.2f} ms)"
    )
    figures["goals_met"] = goals
    if profile_text:
        print()
        print(profile_text)
    sys.stdout.flush()
    return figures


if __name__ == "__main__":
    sys.exit(main())
