"""Edge: running commands on hosts. One Remote per host, kept open across steps.

- FabricRemote: SSH through Fabric (persistent connection, jump hosts, sudo, upload);
- LocalRemote: the replica's own machine (subprocess);
- ScriptedRemote: a fake for unit tests of the executor (answers from a script).

A command that exits non-zero is a CommandResult, not an exception: per-host
outcomes are values. Exceptions are for not being able to run it at all
(ConnectError) or a command cut by its timeout (CommandTimeout).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from troupe.errors import CommandTimeout, ConnectError, InputError, RemoteError
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

    def open(self) -> Remote:
        """Connect now rather than on first use (ConnectError if unreachable)."""
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

    def open(self) -> ScriptedRemote:
        return self

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


# ---- commands as a shell sees them ---------------------------------------------------------

KILL_GRACE = 2  # seconds from the remote `timeout`'s TERM to its KILL
EOF_GRACE = 2.0  # how long output may go on after the command exited (a child holding it)
STATUS_POLL = 0.1  # while output is open, how often to check whether the command exited
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def command_argv(command: str, *, sudo: bool = False, timeout: float | None = None) -> list[str]:
    """The argv that runs `command` with sh: as root under sudo, killed by `timeout`.

    `sudo -n` fails at once when no rule allows it instead of waiting for a password
    nobody will type. `timeout` runs inside sudo so that root kills root's processes, and
    `-k` follows its TERM with a KILL for commands that ignore TERM. `command` itself is
    one argv element: what the templating layer quoted stays quoted.
    """
    argv = ["sh", "-c", command]
    if timeout is not None:
        argv = ["timeout", "-k", str(KILL_GRACE), f"{max(timeout, 0.001):.3f}", *argv]
    if sudo:
        argv = ["sudo", "-n", "--", *argv]
    return argv


def ssh_command_line(command: str, *, sudo: bool = False, timeout: float | None = None) -> str:
    """What the login shell on the host is given, with stdin from /dev/null.

    The bare command (in a brace group, so the redirection covers all of it) when
    nothing wraps it. stdin is redirected here rather than closed with an SSH EOF:
    paramiko's shutdown_write() races the server's channel close, and when the close
    wins, our late EOF names a channel sshd has freed and sshd drops the connection
    (seen with a few threads sharing one connection).
    """
    if not sudo and timeout is None:
        body = command if command.strip() else ":"
        return f"{{ {body}\n}} </dev/null"  # newline: `cmd &` and `cmd # note` stay whole
    return shlex.join(command_argv(command, sudo=sudo, timeout=timeout)) + " </dev/null"


def file_mode(mode: str | None) -> int | None:
    """An octal mode ("644", "0755") as a number; refused before anything touches the host."""
    if mode is None:
        return None
    if not re.fullmatch(r"[0-7]{3,4}", mode):
        raise InputError(f"a file mode is 3 or 4 octal digits such as 0644, not {mode!r}")
    return int(mode, 8)


def _install_argv(src: str, dest: str, mode: str | None) -> list[str]:
    """Copy as root: `install -m` when a mode is asked for, else `cp` (keeps dest's mode)."""
    if mode is None:
        return ["cp", "--", src, dest]
    return ["install", "-m", mode, "--", src, dest]


def _check_source(src: Path) -> None:
    """A missing local file is the playbook's problem, not the host's: say so before connecting."""
    if not src.is_file():
        raise InputError(f"no file to upload at {src}")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


# ---- SSH ---------------------------------------------------------------------------------


class _QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it receives at once.

    sshd keeps Nagle's algorithm on for a connection until a session first runs a
    command. Right after authentication it sends two small unprompted packets (a
    hostkeys-00@openssh.com request, a debug message), so its reply to our first
    channel-open waits for our ACK of them, and Linux delays that ACK by 40 ms when we
    have nothing to send back: the ~44 ms first-command stall that TCP_NODELAY on our
    side did not cure. Re-arming TCP_QUICKACK after every read (one cheap syscall)
    makes the kernel ACK at once. Through a jump host that ACK comes from the jump's
    sshd, which we cannot tune, so there the first command still stalls.
    """

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        data = super().recv(bufsize, flags)
        if _QUICKACK is not None:
            with contextlib.suppress(OSError):
                self.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        return data


def _dial(host: Host) -> socket.socket:
    """The TCP connection for SSH, tuned before the handshake so no step of it stalls."""
    raw = socket.create_connection((host.address, host.port), timeout=host.connect_timeout)
    sock = _QuickAckSocket(fileno=raw.detach())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # A host that vanishes without closing (power cut, partition) is noticed within ~30 s
    # of silence instead of hanging a command with no timeout forever.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    return sock


def _ssh_errors() -> tuple[type[BaseException], ...]:
    """What paramiko raises when the connection fails."""
    import paramiko  # noqa: PLC0415 - late, like fabric below

    return (paramiko.SSHException, EOFError, OSError)


def _describe(exc: BaseException, host: Host) -> str:
    """A sentence for a failed connection attempt, naming where we tried to go."""
    import paramiko  # noqa: PLC0415 - late, like fabric below

    messages: tuple[tuple[type[BaseException], str], ...] = (
        (paramiko.BadHostKeyException, "the host key of {where} does not match known_hosts"),
        (paramiko.AuthenticationException, "authentication failed for {where} (key {key})"),
        (paramiko.ChannelException, "the jump host could not reach {where}: {detail}"),
        (ConnectionRefusedError, "connection refused by {where}"),
        (TimeoutError, "no answer from {where} within {timeout:g}s"),
        (EOFError, "{where} closed the connection"),
        (OSError, "cannot connect to {where}: {detail}"),
    )
    fallback = "SSH to {where} failed: {detail}"
    message = next((m for kind, m in messages if isinstance(exc, kind)), fallback)
    return message.format(
        where=f"{host.user + '@' if host.user else ''}{host.address}:{host.port}",
        key=host.key_file or "default",
        timeout=host.connect_timeout,
        detail=_reason(exc),
    )


def _reason(exc: BaseException) -> str:
    """The most telling text of an exception (paramiko's are often empty or wrapped)."""
    detail = getattr(exc, "text", None) or getattr(exc, "strerror", None) or str(exc)
    return str(detail) or type(exc).__name__


def _fabric_connection(host: Host, gateway: Any) -> Any:
    """A Fabric Connection (not yet open); direct ones get our tuned socket."""
    # Imported here: fabric and paramiko take ~0.3 s to load, which only SSH should pay.
    from fabric import Connection  # noqa: PLC0415

    kwargs: dict[str, Any] = {
        "banner_timeout": host.connect_timeout,
        "auth_timeout": host.connect_timeout,
    }
    if host.key_file:
        kwargs["key_filename"] = str(Path(host.key_file).expanduser())
    if gateway is None:
        kwargs["sock"] = _dial(host)
    try:
        # gateway=False: the inventory decides jump hosts, not a ProxyJump in ~/.ssh/config.
        conn = Connection(
            host.address,
            user=host.user,
            port=host.port,
            gateway=gateway or False,
            connect_kwargs=kwargs,
        )
        conn.client.load_system_host_keys()
    except BaseException:
        if "sock" in kwargs:
            kwargs["sock"].close()
        raise
    return conn


def _open_connection(host: Host) -> Any:
    """An open Connection to `host`, through its jump hosts; ConnectError names the hop."""
    gateway = None
    if host.jump is not None:
        try:
            gateway = _open_connection(host.jump)
        except ConnectError as exc:
            raise ConnectError(host.name, f"via jump host {exc}") from exc
    conn = None
    try:
        conn = _fabric_connection(host, gateway)
        conn.open()
    except Exception as exc:
        _close_chain(conn if conn is not None else gateway)
        raise ConnectError(host.name, _describe(exc, host)) from exc
    return conn


def _close_chain(conn: Any) -> None:
    """Close a connection and the jump-host connections it went through."""
    while conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
        gateway = getattr(conn, "gateway", None)
        conn = gateway if isinstance(gateway, type(conn)) else None


def _drained(channel: Any) -> bool:
    """Both output streams ended and nothing is left unread."""
    ended = channel.eof_received or channel.closed
    return bool(ended and not channel.recv_ready() and not channel.recv_stderr_ready())


def _drain(channel: Any, out: bytearray, err: bytearray) -> None:
    while channel.recv_ready():
        out += channel.recv(65536)
    while channel.recv_stderr_ready():
        err += channel.recv_stderr(65536)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _pump(channel: Any, deadline: float | None) -> tuple[bytes, bytes] | None:
    """Read stdout and stderr as they come until both end; None if `deadline` passes.

    poll() on the channel's pipe wakes the moment paramiko has output or EOF, so a
    command's end is seen at once (poll, not select: no limit of 1024 descriptors when
    hundreds of hosts run at once). Reading as output comes keeps the SSH window open,
    so a command with lots of output never blocks. The exit status does not wake poll():
    it is looked for every STATUS_POLL, because a child the command left in the
    background may hold the output open after the command exited; that gets EOF_GRACE.
    """
    out, err = bytearray(), bytearray()
    exited_at: float | None = None
    poller = select.poll()
    poller.register(channel.fileno(), select.POLLIN)
    while not _drained(channel):
        if exited_at is None and channel.exit_status_ready():
            exited_at = time.monotonic()
        wait = _remaining(deadline)
        if exited_at is not None:
            wait = exited_at + EOF_GRACE - time.monotonic()
            if wait <= 0:
                break
        elif wait is not None and wait <= 0:
            return None
        else:  # an exit status does not wake poll(): look for one now and then
            wait = STATUS_POLL if wait is None else min(wait, STATUS_POLL)
        poller.poll(wait * 1000)
        _drain(channel, out, err)
    return bytes(out), bytes(err)


def _connection_lost(channel: Any, transport: Any) -> bool:
    """The channel ended without an exit status because the connection went away."""
    if channel.exit_status != -1:
        return False
    dead = not transport.is_active() or transport.saved_exception is not None
    return bool(dead or not channel.eof_received)


class FabricRemote:
    """A host over SSH: one persistent Fabric connection, commands on raw channels.

    Fabric opens the connection (keys, user config, jump hosts, SFTP). Commands skip
    Invoke's Runner, which polls its streams on a fixed ~10 ms sleep, and run on a
    paramiko channel of the same transport, woken by poll(). With Nagle off and quick
    ACKs on our socket (see _QuickAckSocket) `true` over an open connection takes ~3 ms
    instead of plain Fabric's ~48, and the first command no longer stalls.

    Host keys: keys listed in ~/.ssh/known_hosts are enforced (a mismatch is a
    ConnectError); unknown hosts are accepted (Fabric's default AutoAddPolicy) and not
    written back. The inventory, which only deployers edit, is what we trust for
    addresses; pin keys by pre-populating known_hosts on the replicas.

    Safe to share between threads: the connection is opened once, under a lock, and
    concurrent commands use separate channels. A connection found dead (host restarted,
    network dropped) is reopened on next use; a command it was running raises ConnectError.
    A command killed by a signal has exit code -1 (paramiko ignores exit-signal).
    """

    def __init__(self, host: Host) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._sftp_lock = threading.Lock()
        self._conn: Any = None

    @property
    def transport(self) -> Any:
        """The paramiko Transport every command goes over (connecting if needed)."""
        return self._connection().transport

    def open(self) -> FabricRemote:
        """Connect now rather than on first use (ConnectError if the host is unreachable)."""
        self._connection()
        return self

    def _connection(self) -> Any:
        with self._lock:
            if self._conn is None or not self._conn.is_connected:
                _close_chain(self._conn)
                self._conn = None
                self._conn = _open_connection(self.host)
            return self._conn

    def run(
        self, command: str, *, sudo: bool = False, timeout: float | None = None
    ) -> CommandResult:
        transport = self.transport  # connecting has its own timeout, not the command's
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        channel = self._start(transport, ssh_command_line(command, sudo=sudo, timeout=timeout))
        try:
            streams = _pump(channel, deadline)
            if streams is None or not channel.status_event.wait(_remaining(deadline)):
                raise CommandTimeout(self.host.name, command, timeout or 0.0)
        finally:
            channel.close()  # at the deadline: the remote `timeout` kills the command too
        if _connection_lost(channel, transport):
            self._discard(transport)
            saved = transport.saved_exception
            reason = _reason(saved) if saved else "the host closed the session"
            raise ConnectError(self.host.name, f"connection lost while running a command: {reason}")
        out, err = streams
        return CommandResult(
            int(channel.exit_status), _text(out), _text(err), time.monotonic() - started
        )

    def _start(self, transport: Any, line: str) -> Any:
        """A channel running `line`; a failure that broke the link drops the connection."""
        channel = None
        try:
            channel = transport.open_session(timeout=self.host.connect_timeout)
            channel.exec_command(line)
        except _ssh_errors() as exc:
            if channel is not None:
                channel.close()
            if isinstance(exc, EOFError | OSError) or not transport.is_active():
                self._discard(transport)
            raise ConnectError(self.host.name, f"cannot start a command: {_reason(exc)}") from exc
        return channel

    def _discard(self, transport: Any) -> None:
        """Drop a connection that failed, so the next command reconnects at once.

        Without this, a dead link may still look alive for a moment (e.g. behind a jump
        host, until paramiko reads the EOF) and the next command would fail on it too.
        """
        with self._lock:
            if self._conn is not None and self._conn.transport is transport:
                _close_chain(self._conn)
                self._conn = None

    def put(self, src: Path, dest: str, *, mode: str | None = None, sudo: bool = False) -> None:
        """Upload over SFTP; as root via a private temporary file and `sudo install`."""
        perm = file_mode(mode)
        _check_source(src)
        if sudo:
            self._put_as_root(src, dest, mode)
            return
        self._sftp_call(lambda sftp: sftp.put(str(src), dest), dest)
        if perm is not None:
            self._sftp_call(lambda sftp: sftp.chmod(dest, perm), dest)

    def _put_as_root(self, src: Path, dest: str, mode: str | None) -> None:
        tmp = f"/tmp/.troupe-upload-{secrets.token_hex(8)}"  # noqa: S108 - random name
        self._sftp_call(lambda sftp: sftp.put(str(src), tmp), dest)
        install = shlex.join(_install_argv(tmp, dest, mode))
        result = self.run(f"{install}; s=$?; rm -f -- {shlex.quote(tmp)}; exit $s", sudo=True)
        if not result.ok:
            self.run(f"rm -f -- {shlex.quote(tmp)}")  # if sudo itself refused
            problem = result.stderr.strip() or f"exit code {result.exit_code}"
            raise RemoteError(self.host.name, f"installing {dest} as root failed: {problem}")

    def _sftp_call(self, call: Callable[[Any], object], dest: str) -> None:
        """One SFTP operation; a refused write is a RemoteError, a lost link a ConnectError."""
        conn = self._connection()
        with self._sftp_lock:
            try:
                call(conn.sftp())
            except _ssh_errors() as exc:
                # paramiko reports what the SFTP server refused as OSError (with errno);
                # anything else, or a dead transport, is the link failing.
                if not isinstance(exc, OSError) or not conn.is_connected:
                    self._discard(conn.transport)
                    reason = f"cannot upload {dest}: {_reason(exc)}"
                    raise ConnectError(self.host.name, reason) from exc
                raise RemoteError(
                    self.host.name, f"upload to {dest} failed: {_reason(exc)}"
                ) from exc

    def close(self) -> None:
        with self._lock:
            _close_chain(self._conn)
            self._conn = None


# ---- the replica's own machine ---------------------------------------------------------


class LocalRemote:
    """The replica's own machine: each command is `sh -c` in a new process group.

    The group is what a timeout kills, so a command's children go with it; under sudo a
    `timeout` inside sudo does it too, as root. stdin is /dev/null, as over SSH.
    """

    def __init__(self, host: Host) -> None:
        self.host = host

    def open(self) -> LocalRemote:
        return self  # nothing to connect

    def run(
        self, command: str, *, sudo: bool = False, timeout: float | None = None
    ) -> CommandResult:
        argv = command_argv(command, sudo=sudo, timeout=timeout if sudo else None)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(  # noqa: S603 - running a shell command is the job
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise ConnectError(self.host.name, f"cannot start {argv[0]}: {exc}") from exc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise CommandTimeout(self.host.name, command, timeout or 0.0) from None
        return CommandResult(proc.returncode, _text(out), _text(err), time.monotonic() - started)

    def put(self, src: Path, dest: str, *, mode: str | None = None, sudo: bool = False) -> None:
        """shutil.copy (+ chmod); as root with `sudo install`."""
        perm = file_mode(mode)
        _check_source(src)
        if sudo:
            result = self.run(shlex.join(_install_argv(str(src), dest, mode)), sudo=True)
            if not result.ok:
                problem = result.stderr.strip() or f"exit code {result.exit_code}"
                raise RemoteError(self.host.name, f"installing {dest} as root failed: {problem}")
            return
        try:
            shutil.copy(src, dest)
            if perm is not None:
                Path(dest).chmod(perm)
        except OSError as exc:
            raise RemoteError(self.host.name, f"copy to {dest} failed: {exc}") from exc

    def close(self) -> None:
        """Nothing to release."""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's process group, then reap it without waiting on stray pipes."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=KILL_GRACE + 1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def connect(host: Host) -> Remote:
    """The Connector for real hosts: SSH for `connection: ssh`, subprocess for `local`."""
    if host.connection == "local":
        return LocalRemote(host)
    return FabricRemote(host)
