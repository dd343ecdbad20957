"""A fleet of real sshd "hosts" on loopback, for tests of the SSH remote and the executor,
the benchmarks, and `troupe sandbox`.

Every host is its own sshd process listening on its own loopback address
(127.0.1.2, 127.0.1.3, ...: all of 127.0.0.0/8 is loopback on Linux), with its own
host key, config, pid file and log, so tests see distinct hosts without network
namespaces or containers. Clients log in as the system user `troupe-test`, whose
login shell is dash (/bin/sh): no rc files, so a remote command costs what it costs
on a lean production host, not a pyenv start-up. That user may sudo without a
password, which is what `sudo: true` tasks need.

Needs root (it creates the user, the sudoers rule and /run/sshd) and Debian's
openssh-server. If sshd is missing the fleet FAILS with a message saying what to
install: a skipped SSH test suite in CI looks exactly like a passing one.

Everything started is tracked by PID. `kill(i)` and `stop()` signal only those
processes and their descendants (found through /proc parent links), never by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from troupe.errors import TroupeError
from troupe.inventory import HostDefaults, HostSpec, Inventory

SSHD = Path("/usr/sbin/sshd")
KEYGEN = shutil.which("ssh-keygen") or "ssh-keygen"  # openssh-client
USER = "troupe-test"
SUDOERS = Path("/etc/sudoers.d/troupe-test")
SUDOERS_RULE = f"{USER} ALL=(ALL:ALL) NOPASSWD: ALL\n"
PRIVSEP_DIR = Path("/run/sshd")
START_TIMEOUT = 10.0

# Loaded once, before any fork: the pre-exec hook must not import or look anything up.
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class FleetError(TroupeError):
    """The fleet could not be set up; the message says what to fix (never a skip)."""


@dataclass
class Daemon:
    """One fleet host: its sshd process and the files that belong to it."""

    name: str
    address: str
    root: Path  # the host's own directory, writable by the login user (vars.root)
    config: Path
    pid_file: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


class SshFleet:
    """`n` sshd hosts on 127.0.1.2.., one shared port; started at construction."""

    def __init__(self, n: int, workdir: Path, *, port: int | None = None) -> None:
        if not 1 <= n <= 250:
            raise ValueError("a fleet has 1..250 hosts (one loopback address each)")
        self.workdir = workdir.resolve()
        check_prerequisites()
        ensure_user()
        ensure_sudoers()
        self._prepare_workdir()
        self.client_key = self.workdir / "client_key"
        self.daemons = [self._daemon(i) for i in range(n)]
        self._keygen()
        self._penalties = True
        self._start_on_a_free_port(port)

    def _start_on_a_free_port(self, port: int | None, attempts: int = 3) -> None:
        """Start everything; if another run took the port meanwhile, try another one."""
        for attempt in range(attempts):
            self.port = port or free_port([d.address for d in self.daemons])
            self._write_configs()
            try:
                self._start_all()
            except BaseException as exc:
                self.stop()
                lost_race = isinstance(exc, FleetError) and "bind" in str(exc).lower()
                if port is not None or attempt == attempts - 1 or not lost_race:
                    raise
            else:
                return

    # ---- set-up ------------------------------------------------------------------------

    def _prepare_workdir(self) -> None:
        """The login user reads the client public key and writes its host directories."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        for parent in self.workdir.parents:
            if not parent.stat().st_mode & 0o001:
                raise FleetError(
                    f"{USER} cannot traverse {parent} (mode {parent.stat().st_mode & 0o777:o}); "
                    "put the fleet workdir somewhere world-traversable, e.g. tempfile.mkdtemp()"
                )
        (self.workdir / "hosts").mkdir(exist_ok=True)
        (self.workdir / "sshd").mkdir(exist_ok=True)

    def _daemon(self, i: int) -> Daemon:
        name = f"host{i + 1:02d}"
        own = self.workdir / "sshd" / name
        own.mkdir(exist_ok=True)
        root = self.workdir / "hosts" / name
        root.mkdir(exist_ok=True)
        user = pwd.getpwnam(USER)
        os.chown(root, user.pw_uid, user.pw_gid)
        root.chmod(0o755)
        return Daemon(
            name=name,
            address=f"127.0.1.{i + 2}",
            root=root,
            config=own / "sshd_config",
            pid_file=own / "sshd.pid",
            log=own / "sshd.log",
        )

    def _keygen(self) -> None:
        """One client key and a host key per host, generated in parallel (~10 ms each)."""
        targets = [self.client_key] + [d.config.parent / "host_key" for d in self.daemons]
        procs = [
            subprocess.Popen(  # noqa: S603 - ssh-keygen from PATH, arguments we made
                [KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "troupe-fleet", "-f", t],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for t in targets
            if not t.exists()
        ]
        for proc in procs:
            out, _ = proc.communicate(timeout=30)
            if proc.returncode != 0:
                raise FleetError(f"ssh-keygen failed: {out.decode(errors='replace')}")

    def _write_configs(self) -> None:
        """Write every host's sshd_config; `sshd -t` the first to catch version differences."""
        first = self.daemons[0]
        first.config.write_text(self._config(first))
        problem = sshd_test(first.config)
        if problem and "PerSourcePenalties" in problem:
            self._penalties = False  # OpenSSH < 9.8 does not know (or need) the option
            first.config.write_text(self._config(first))
            problem = sshd_test(first.config)
        if problem:
            raise FleetError(f"sshd rejects the generated config {first.config}:\n{problem}")
        for daemon in self.daemons[1:]:
            daemon.config.write_text(self._config(daemon))

    def _config(self, d: Daemon) -> str:
        """A minimal sshd_config: key auth for the test user only, quiet, many sessions."""
        lines = [
            f"ListenAddress {d.address}:{self.port}",
            f"HostKey {d.config.parent / 'host_key'}",
            f"PidFile {d.pid_file}",
            f"AuthorizedKeysFile {self.client_key}.pub",
            f"AllowUsers {USER}",
            "PermitRootLogin no",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "UseDNS no",
            "X11Forwarding no",
            "AllowTcpForwarding yes",
            "PrintMotd no",
            "PrintLastLog no",
            # 100 hosts x parallel test clients: never refuse a connection or a channel.
            "MaxStartups 1000",
            "MaxSessions 1000",
            "LoginGraceTime 30",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
        ]
        if self._penalties:
            # OpenSSH >= 9.8 penalises sources whose sessions crash or time out: tests do that.
            lines.append("PerSourcePenalties no")
        return "\n".join(lines) + "\n"

    # ---- processes ---------------------------------------------------------------------

    def _start_all(self) -> None:
        """Start every sshd at once, then wait until each has bound its address."""
        for daemon in self.daemons:
            self._start(daemon)
        deadline = time.monotonic() + START_TIMEOUT
        for daemon in self.daemons:
            self._wait_listening(daemon, deadline)

    def _start(self, daemon: Daemon) -> None:
        daemon.pid_file.unlink(missing_ok=True)
        with daemon.log.open("ab") as log:
            daemon.proc = subprocess.Popen(  # noqa: S603 - fixed programs, arguments we made
                [SSHD, "-D", "-e", "-f", daemon.config],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl, set up before fork
            )

    def _wait_listening(self, daemon: Daemon, deadline: float) -> None:
        """sshd writes its PidFile after binding: wait for it (no probe connection needed)."""
        assert daemon.proc is not None
        while True:
            if daemon.proc.poll() is not None:
                raise FleetError(
                    f"sshd for {daemon.name} exited with {daemon.proc.returncode}:\n"
                    f"{daemon.log.read_text(errors='replace')}"
                )
            if _read_pid(daemon.pid_file) == daemon.proc.pid:
                return
            if time.monotonic() > deadline:
                raise FleetError(f"sshd for {daemon.name} did not start in {START_TIMEOUT}s")
            time.sleep(0.005)

    def processes(self, i: int) -> list[tuple[int, str]]:
        """(pid, command line) of everything host `i`'s sshd runs: connections, commands."""
        proc = self.daemons[i].proc
        if proc is None or proc.poll() is not None:
            return []
        return [(pid, _cmdline(pid)) for pid in descendants(proc.pid, children_map())]

    def kill(self, i: int) -> None:
        """Host `i` dies: SIGKILL its sshd, then its connections, then their commands."""
        self._kill([self.daemons[i]])

    def stop(self) -> None:
        """Stop every sshd this fleet started, and whatever those still run."""
        self._kill(self.daemons)

    def _kill(self, daemons: list[Daemon]) -> None:
        """SIGKILL each live sshd and its tree top-down (connections die before commands)."""
        children = children_map()  # one /proc scan for the lot
        killed = []
        for daemon in daemons:
            if daemon.proc is None or daemon.proc.poll() is not None:
                continue
            try:
                self._check_ours(daemon)
            except FleetError:
                continue
            tree = descendants(daemon.proc.pid, children)
            _signal(daemon.proc.pid, signal.SIGKILL)
            for pid in tree:
                _signal(pid, signal.SIGKILL)
            killed.append(daemon.proc)
        for proc in killed:
            proc.wait(timeout=10)

    def _check_ours(self, daemon: Daemon) -> None:
        """Refuse to signal a PID whose command line is not our sshd with our config."""
        assert daemon.proc is not None
        cmdline = _cmdline(daemon.proc.pid)
        if str(daemon.config) not in cmdline:
            raise FleetError(f"pid {daemon.proc.pid} is not our sshd ({cmdline!r})")

    # ---- what tests use ----------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.daemons]

    def inventory(self) -> Inventory:
        """hosts host01..hostNN (vars.root: the host's writable directory), group `web`."""
        return Inventory(
            defaults=HostDefaults(
                user=USER, port=self.port, key_file=str(self.client_key), connect_timeout=5.0
            ),
            hosts={
                d.name: HostSpec(address=d.address, vars={"root": str(d.root)})
                for d in self.daemons
            },
            groups={"web": self.names},
        )

    def __enter__(self) -> SshFleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---- the machine: user, sudo, sshd ---------------------------------------------------------


def check_prerequisites() -> None:
    """Fail (never skip) with what to install when the machine cannot run a fleet."""
    if os.geteuid() != 0:
        raise FleetError("the SSH test fleet needs root (it creates a user and a sudo rule)")
    missing = [p for p in ("ssh-keygen", "useradd", "visudo", "sudo") if not shutil.which(p)]
    if not SSHD.exists() or missing:
        raise FleetError(
            f"{SSHD} or {missing} not found: install Debian's openssh-server and sudo "
            "(`apt-get install -y openssh-server sudo`, or `make system-deps`)"
        )
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)


def ensure_user() -> None:
    """Create `troupe-test` (dash login shell, home, unlocked) if needed; idempotent."""
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        _run(["useradd", "--system", "--create-home", "--shell", "/bin/sh", USER], ok=(0, 9))
        entry = pwd.getpwnam(USER)  # exit 9: created meanwhile by a parallel run
    if entry.pw_shell != "/bin/sh":
        _run(["usermod", "--shell", "/bin/sh", USER])
    home = Path(entry.pw_dir)
    if not home.is_dir():
        home.mkdir(parents=True, mode=0o755)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    if _shadow_password(USER).startswith("!"):
        # useradd leaves the account locked, and sshd (without PAM) refuses locked accounts.
        _run(["usermod", "--password", "*", USER])


def _shadow_password(user: str) -> str:
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return fields[1]
    return ""


def ensure_sudoers() -> None:
    """Passwordless sudo for the test user, validated by `visudo -c` before installing."""
    if SUDOERS.exists() and SUDOERS.read_text() == SUDOERS_RULE:
        return
    # A name with a dot: sudo ignores it while it sits in sudoers.d; replace() is atomic.
    tmp = SUDOERS.with_name(f".{SUDOERS.name}.{os.getpid()}")
    tmp.write_text(SUDOERS_RULE)
    tmp.chmod(0o440)
    try:
        _run(["visudo", "-c", "-q", "-f", str(tmp)])
        tmp.replace(SUDOERS)
    finally:
        tmp.unlink(missing_ok=True)


def sshd_test(config: Path) -> str:
    """`sshd -t`: the config problem as text, or "" if sshd accepts the config."""
    done = subprocess.run(  # noqa: S603 - fixed programs, arguments we made
        [SSHD, "-t", "-f", config], capture_output=True, text=True, timeout=30, check=False
    )
    return "" if done.returncode == 0 else (done.stderr + done.stdout).strip()


def free_port(addresses: list[str], attempts: int = 50) -> int:
    """A port free on all of `addresses`, so parallel test runs do not collide on 2222."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port: int = probe.getsockname()[1]
        if all(_bindable(a, port) for a in addresses[1:]):
            return port
    raise FleetError(f"no port free on all of {len(addresses)} loopback addresses")


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
        return True


# ---- processes by PID ----------------------------------------------------------------------


def children_map() -> dict[int, list[int]]:
    """Every live process's children, from /proc parent links (one scan)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents():
        children.setdefault(ppid, []).append(pid)
    return children


def descendants(root: int, children: dict[int, list[int]]) -> list[int]:
    """All descendants of `root`, parents before children."""
    found: list[int] = []
    queue = [root]
    while queue:
        kids = children.get(queue.pop(0), [])
        found.extend(kids)
        queue.extend(kids)
    return found


def _parents() -> Iterator[tuple[int, int]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid ...": comm may contain spaces or parentheses.
        yield int(entry.name), int(stat.rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _die_with_parent() -> None:
    """Runs in the child before exec: if the test run is killed outright, sshd goes too."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _run(argv: list[str], ok: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603 - fixed programs, arguments we made
    if done.returncode not in ok:
        raise FleetError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


FleetFactory = Callable[[int], SshFleet]
