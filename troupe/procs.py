"""Troupe's own processes on one machine: localslack and replicas, started and stopped by
PID (never by name). Shared by `troupe sandbox` and the end-to-end test harness, so the
two start a fleet the same way.

A replica is `python -m troupe.cli run -c CONFIG --replica NAME` with its tokens in the
environment (TROUPE_BOT_TOKEN, TROUPE_APP_TOKEN), never on the command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

TROUPE = [sys.executable, "-m", "troupe.cli"]
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Loaded once, before any fork: a pre-exec hook must not import or look anything up.
_libc = ctypes.CDLL(None, use_errno=True)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def localslack_argv(workspace: Path, port: int, flags: list[str] | None = None) -> list[str]:
    return [*TROUPE, "localslack", "--workspace", str(workspace), "--port", str(port)] + (
        flags or []
    )


def replica_argv(config: Path, name: str, supervised: bool = False) -> list[str]:
    """`troupe run` for one replica. Unsupervised by default: whoever starts it (the
    sandbox, the tests) manages the process, and the sandbox's replicas share one
    checkout, which a supervisor would treat as its own (docs/self-update.md)."""
    argv = [*TROUPE, "run", "-c", str(config), "--replica", name]
    return argv if supervised else [*argv, "--no-supervisor"]


def replica_env(
    bot_token: str, app_token: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """This environment without TROUPE_* settings, plus the replica's tokens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROUPE_")}
    env |= {"TROUPE_BOT_TOKEN": bot_token, "TROUPE_APP_TOKEN": app_token, "PYTHONUNBUFFERED": "1"}
    return env | dict(extra or {})


def spawn(
    argv: list[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    own_group: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `argv` with its output appended to `log_path`. `own_group`: in a session of
    its own (a terminal's Ctrl-C reaches only our process, which then stops it in order),
    and terminated if we die, so a killed parent leaves no orphan behind."""
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=own_group,
            preexec_fn=_die_with_parent if own_group else None,  # noqa: PLW1509
        )


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def become_subreaper() -> bool:
    """Orphaned descendants (daemons our children start, like the demo app) are re-parented
    to this process instead of init, so it can still find and stop them. Linux only."""
    return bool(_libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGCONT (it may be stopped), then SIGTERM."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)


def reap(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Wait up to `grace` seconds for a terminated process, then SIGKILL it."""
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Terminate, then SIGKILL if it has not exited after `grace` seconds."""
    terminate(proc)
    reap(proc, grace)


# ---- the process tree (from /proc) --------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of `pid`, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    return fields[0], int(fields[1])


def _all_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def descendants(root: int) -> list[int]:
    """Every live (not zombie) process below `root`, parents before children."""
    children: dict[int, list[int]] = {}
    zombies: set[int] = set()
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None:
            children.setdefault(stat[1], []).append(pid)
            if stat[0] == "Z":
                zombies.add(pid)
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return [p for p in out if p not in zombies]


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def reap_orphans(keep: set[int]) -> None:
    """Collect the exit status of re-parented children that ended (a subreaper's duty),
    leaving alone the ones a Popen object will wait for (`keep`)."""
    for pid in list(_all_pids()):
        stat = _stat(pid)
        if stat and stat[0] == "Z" and stat[1] == os.getpid() and pid not in keep:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
