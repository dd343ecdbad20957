"""Keeps one replica process alive, and runs a new version of it on probation (edge).

`troupe run` runs this by default. It starts the replica as a child process,
`python -m troupe.cli run --no-supervisor ...` in the replica's checkout (so the child
imports the checkout's code), with a health port it chose, and then:

- the child exits unexpectedly → it is started again after a backoff (1s, 2s, 4s, ...
  up to 30s; back to 1s once a child has run for a minute), with a log line saying so;
- SIGTERM or SIGINT → forwarded to the child (which stops claiming, lets its step finish
  and hands its claim over); once the child is gone the supervisor exits 0. A child that
  takes longer than `selfupdate.stop_timeout` is killed;
- SIGHUP → a restart request: `.troupe/restart.json` (written by `troupe self-update`)
  names the target commit and the previous one. The child is stopped as above and started
  again on the checkout as it is now, **on probation**: it must answer `GET /healthz` with
  200 within `selfupdate.probation`. If it does, the verdict is `healthy`; if it exits or
  the time runs out, the checkout is switched back to the previous commit (dependencies
  reinstalled when they differ), the old version is started again and the verdict is
  `reverted`, with the reason (the child's exit code and last output line, or the time).

The verdict goes to `.troupe/probation.json` (troupe.selfupdate reads it);
`.troupe/supervisor.json` says who runs what, for `troupe self-update` and people.
A supervisor that starts while a probation is recorded as running by a supervisor that
died continues it: the checkout is the new version, and it still has to prove itself.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from troupe.config import Config, SelfUpdateSettings
from troupe.errors import TroupeError
from troupe.selfupdate import (
    Checkout,
    NotACheckout,
    RestartRequest,
    SupervisorState,
    Verdict,
    pid_alive,
    read_request,
    read_verdict,
    reinstall,
    state_dir,
    write_json,
)
from troupe.version import checkout_of_this_process

log = logging.getLogger("troupe.supervisor")
TICK = 0.1  # seconds between looks at the child, the signals and the health endpoint
STABLE = 60.0  # a child that ran this long resets the backoff


def backoff(failures: int) -> float:
    """Seconds before restarting a child after `failures` quick exits in a row (pure)."""
    return float(min(30, 2 ** max(0, failures - 1)))


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    commit: str
    started: float = field(default_factory=time.monotonic)
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=20))

    def last_line(self) -> str:
        lines = [line for line in self.tail if line.strip()]
        return lines[-1].strip()[-300:] if lines else ""


@dataclass
class Probation:
    request: RestartRequest
    deadline: float


@dataclass(frozen=True)
class Setup:
    """What the supervisor runs, and where."""

    argv: list[str]  # the child's command line
    checkout: Path  # its working directory, and the git checkout self-update switches
    replica: str
    health_url: str
    settings: SelfUpdateSettings
    env: dict[str, str]


class Supervisor:
    def __init__(self, setup: Setup, out: IO[bytes] | None = None) -> None:
        self.setup = setup
        self.out = out if out is not None else sys.stdout.buffer
        self.child: Child | None = None
        self.probation: Probation | None = None
        self.failures = 0
        self.stopping = threading.Event()
        self.restart = threading.Event()
        self._wake = threading.Event()
        self._out_lock = threading.Lock()
        # Outside a git checkout (an installed package) it only restarts: no self-update,
        # and no state files next to the package.
        self.stateful = (setup.checkout / ".git").exists()

    # ---- signals -----------------------------------------------------------------------

    def install_signals(self) -> None:
        def stop(signum: int, frame: object) -> None:
            self.stopping.set()
            self._wake.set()

        def hup(signum: int, frame: object) -> None:
            self.restart.set()
            self._wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    # ---- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        if not self.stateful:
            log.warning(
                "%s is not a git checkout: self-update is not available", self.setup.checkout
            )
        self._resume_probation()
        self._start()
        while not self.stopping.is_set():
            self._wake.wait(TICK)
            self._wake.clear()
            if self.stopping.is_set():
                break
            if self.restart.is_set():
                self.restart.clear()
                self._on_restart_request()
            elif self.probation is not None:
                self._judge()
            elif self.child is not None and self.child.proc.poll() is not None:
                self._on_unexpected_exit(self.child)
        self._stop_child("shutting down")
        self._write_state("stopping")
        log.info("supervisor of %s: stopped", self.setup.replica)
        return 0

    def _on_unexpected_exit(self, child: Child) -> None:
        ran = time.monotonic() - child.started
        self.failures = 1 if ran >= STABLE else self.failures + 1
        delay = backoff(self.failures)
        last = child.last_line()
        log.warning(
            "%s exited unexpectedly with code %s%s; restarting in %gs",
            self.setup.replica,
            child.proc.returncode,
            f" ({last})" if last else "",
            delay,
        )
        self.child = None
        self._write_state("restarting")
        if self.stopping.wait(delay):
            return
        self._start()

    # ---- children ----------------------------------------------------------------------

    def _start(self) -> None:
        commit = self._head()
        proc = subprocess.Popen(  # noqa: S603 - our own command line, no shell
            self.setup.argv,
            cwd=self.setup.checkout,
            env=self.setup.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.child = Child(proc, commit)
        threading.Thread(
            target=self._pump, args=(self.child,), name="supervisor-output", daemon=True
        ).start()
        log.info(
            "supervisor of %s: started pid %s on %s%s",
            self.setup.replica,
            proc.pid,
            commit[:7],
            " (on probation)" if self.probation else "",
        )
        self._write_state("probation" if self.probation else "running")

    def _pump(self, child: Child) -> None:
        """The child's output, line by line, to ours; the last lines kept for verdicts."""
        assert child.proc.stdout is not None
        for raw in iter(child.proc.stdout.readline, b""):
            child.tail.append(raw.decode("utf-8", "replace"))
            with self._out_lock:
                self.out.write(raw)
                self.out.flush()

    def _stop_child(self, why: str) -> None:
        child, self.child = self.child, None
        if child is None or child.proc.poll() is not None:
            return
        log.info("supervisor of %s: stopping pid %s (%s)", self.setup.replica, child.proc.pid, why)
        child.proc.send_signal(signal.SIGTERM)
        try:
            child.proc.wait(self.setup.settings.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "%s did not stop within %gs: killed",
                self.setup.replica,
                self.setup.settings.stop_timeout,
            )
            child.proc.kill()
            child.proc.wait()

    # ---- probation ---------------------------------------------------------------------

    def _on_restart_request(self) -> None:
        request = read_request(self.setup.checkout)
        if request is None:
            log.info(
                "supervisor of %s: SIGHUP without a request: plain restart", self.setup.replica
            )
            self._stop_child("restart")
            self._start()
            return
        self._verdict(request, "running")
        self.probation = Probation(request, 0.0)
        self._write_state("restarting")
        self._stop_child(f"restart on {request.target[:7]}")
        self.probation.deadline = time.monotonic() + self.setup.settings.probation
        self._start()

    def _resume_probation(self) -> None:
        """A probation that a dead supervisor was running is ours to finish."""
        verdict = read_verdict(self.setup.checkout) if self.stateful else None
        if verdict is None or verdict.verdict != "running" or pid_alive(verdict.supervisor):
            return
        if verdict.target != self._head():
            return
        try:  # a checkout someone works in is not ours to switch back
            Checkout(self.setup.checkout).ensure_clean()
        except TroupeError as exc:
            log.warning("not continuing the probation of %s: %s", verdict.target[:7], exc)
            return
        log.info(
            "supervisor of %s: continuing the probation of %s",
            self.setup.replica,
            verdict.target[:7],
        )
        request = RestartRequest(verdict.id, verdict.target, verdict.previous)
        self._verdict(request, "running")
        self.probation = Probation(request, time.monotonic() + self.setup.settings.probation)

    def _judge(self) -> None:
        probation, child = self.probation, self.child
        assert probation is not None and child is not None
        if child.proc.poll() is not None:
            last = child.last_line()
            why = f"it exited with code {child.proc.returncode}" + (f": {last}" if last else "")
            self._revert(probation, why)
        elif self._healthy():
            log.info("supervisor of %s: %s is healthy", self.setup.replica, child.commit[:7])
            self.probation = None
            self.failures = 0
            self._verdict(probation.request, "healthy")
            self._write_state("running")
        elif time.monotonic() > probation.deadline:
            limit = self.setup.settings.probation
            self._revert(probation, f"it did not report healthy within {limit:g}s")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.setup.health_url, timeout=1) as response:  # noqa: S310 - our own http URL
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _revert(self, probation: Probation, why: str) -> None:
        request = probation.request
        log.warning(
            "supervisor of %s: %s failed probation (%s); reverting to %s",
            self.setup.replica,
            request.target[:7],
            why,
            request.previous[:7],
        )
        self._stop_child("failed probation")
        self.probation = None
        reason = why
        try:
            self._switch_back(request)
        except TroupeError as exc:
            reason = f"{why}; switching back failed too: {exc}"
            log.error("supervisor of %s: %s", self.setup.replica, reason)
        self._verdict(request, "reverted", reason)
        self._start()

    def _switch_back(self, request: RestartRequest) -> None:
        checkout = Checkout(self.setup.checkout)
        checkout.go_to(request.previous)
        if checkout.dependencies_changed(request.target, request.previous):
            reinstall(checkout.path)

    # ---- state files -------------------------------------------------------------------

    def _head(self) -> str:
        try:
            return Checkout(self.setup.checkout).head
        except (NotACheckout, ValueError):
            return "unknown"

    def _verdict(
        self,
        request: RestartRequest,
        verdict: Literal["running", "healthy", "reverted"],
        reason: str = "",
    ) -> None:
        value = Verdict(request.id, request.target, request.previous, verdict, reason, os.getpid())
        if self.stateful:
            write_json(state_dir(self.setup.checkout) / "probation.json", value)

    def _write_state(
        self, state: Literal["starting", "running", "probation", "restarting", "stopping"]
    ) -> None:
        settings = self.setup.settings
        value = SupervisorState(
            pid=os.getpid(),
            replica=self.setup.replica,
            child_pid=self.child.proc.pid if self.child else None,
            health_url=self.setup.health_url,
            commit=self.child.commit if self.child else self._head(),
            state=state,
            probation=settings.probation,
            remote=settings.remote,
            require_signed_tag=settings.require_signed_tag,
        )
        if self.stateful:
            write_json(state_dir(self.setup.checkout) / "supervisor.json", value)


def supervise(setup: Setup) -> int:
    """Run the supervisor in this process until SIGTERM/SIGINT; the exit code."""
    supervisor = Supervisor(setup)
    supervisor.install_signals()
    return supervisor.run()


def setup_for(config: Config, config_path: Path, replica: str, health_port: int | None) -> Setup:
    """The child `troupe run --no-supervisor` for this replica: same config and name, a
    fixed health port (the one given, the configured one, or a free one chosen now), run
    in the checkout this troupe was imported from."""
    port = health_port if health_port is not None else config.health.port
    if port == 0:
        port = _free_port(config.health.host)
    argv = [sys.executable, "-m", "troupe.cli", "run", "--no-supervisor"]
    argv += ["-c", str(config_path.resolve()), "--replica", replica, "--health-port", str(port)]
    checkout = checkout_of_this_process()
    env = dict(os.environ) | {"TROUPE_CHECKOUT": str(checkout), "TROUPE_REPLICA": replica}
    host = "127.0.0.1" if config.health.host in ("0.0.0.0", "", "::") else config.health.host  # noqa: S104 - compared, not bound
    return Setup(argv, checkout, replica, f"http://{host}:{port}/healthz", config.selfupdate, env)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
