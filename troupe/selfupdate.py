"""Edge: a replica updates its own checkout with git, and asks its supervisor to restart.

`troupe self-update [REF]`:

1. fetch from the configured remote (`selfupdate.remote`);
2. verify the target: the ref exists; it descends from the current commit (unless
   `--force`); with `selfupdate.require_signed_tag`, it is a tag `git verify-tag` accepts;
   the checkout has no local changes;
3. switch: record the current commit in `.troupe/previous`, then a detached checkout of
   the target; reinstall dependencies (`python -m pip install -e .` in the replica's own
   virtualenv) when `pyproject.toml`, a lock or a requirements file changed;
4. ask the supervisor to restart on probation (`.troupe/restart.json`, then SIGHUP), and
   with `--wait` wait for its verdict in `.troupe/probation.json`: healthy (exit 0) or
   reverted (exit 1, with the reason).

It is idempotent, so that a replica that takes a self-update over can run the same step
again: already running the target → done at once; probation still running → wait for it;
the target was reverted → the same failure (unless `--force` tries again).

When the step runs inside the very replica it restarts (the supervisor tells its child
its checkout in TROUPE_CHECKOUT), it cannot wait for its own verdict: it returns as soon
as the supervisor has taken the request, and the replica, stopped by the supervisor,
hands the command over to another replica, which runs the step again and waits.

The files under `<checkout>/.troupe/` are the whole interface between this command and
the supervisor (troupe.supervisor); they are JSON, written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import click
import git

from troupe.config import SelfUpdateSettings, load_config
from troupe.errors import InputError, TroupeError
from troupe.version import Version, checkout_of_this_process, describe

STATE_DIR = ".troupe"
DEPENDENCY_FILES = re.compile(
    r"(^|/)(pyproject\.toml|setup\.py|setup\.cfg|requirements[^/]*\.txt|[^/]*\.lock)$"
)
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@{}^~+-]*$")
SELF_GRACE = 1.0  # seconds for the supervisor's SIGTERM to reach the replica running us


# ---- errors ----------------------------------------------------------------------------------


class SelfUpdateError(TroupeError):
    """A self-update could not be done; the checkout is as it was."""


class NotACheckout(SelfUpdateError):
    """The directory is not a git checkout."""


class DirtyCheckout(SelfUpdateError):
    """Local changes would be lost (or would make the new version something else)."""


class FetchFailed(SelfUpdateError):
    """The remote could not be fetched."""


class UnknownRef(SelfUpdateError):
    """The target names no commit."""


class NotDescendant(SelfUpdateError):
    """The target does not descend from the current commit (a downgrade or a fork)."""


class UnsignedTag(SelfUpdateError):
    """A signed tag is required and the target is not one (or its signature is bad)."""


class InstallFailed(SelfUpdateError):
    """Reinstalling dependencies failed; the checkout was switched back."""


class NoSupervisor(SelfUpdateError):
    """Nobody to restart the replica: it does not run under `troupe run`'s supervisor."""


class Reverted(SelfUpdateError):
    """The new version did not become healthy on probation and was switched back."""


class NoVerdict(SelfUpdateError):
    """The supervisor said nothing in time."""


# ---- the state files (shared with troupe.supervisor) -------------------------------------


@dataclass(frozen=True)
class SupervisorState:
    """`.troupe/supervisor.json`, kept up to date by the supervisor."""

    pid: int
    replica: str
    child_pid: int | None
    health_url: str
    commit: str  # what the running child was started on
    state: Literal["starting", "running", "probation", "restarting", "stopping"]
    probation: float
    remote: str = "origin"
    require_signed_tag: bool = False


@dataclass(frozen=True)
class RestartRequest:
    """`.troupe/restart.json`: written by self-update before it sends SIGHUP."""

    id: str
    target: str
    previous: str


@dataclass(frozen=True)
class Verdict:
    """`.troupe/probation.json`: the supervisor's answer to one restart request."""

    id: str
    target: str
    previous: str
    verdict: Literal["running", "healthy", "reverted"]
    reason: str = ""
    supervisor: int = 0  # pid of the supervisor that runs (ran) the probation


def state_dir(checkout: Path) -> Path:
    path = checkout / STATE_DIR
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        # Untracked, and invisible to `git status`: the state is not part of the checkout.
        (path / ".gitignore").write_text("*\n")
    return path


def write_json(path: Path, value: Any) -> None:
    """Atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(value), indent=1) + "\n")
    tmp.replace(path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_supervisor(checkout: Path) -> SupervisorState | None:
    data = _read(checkout / STATE_DIR / "supervisor.json")
    try:
        return SupervisorState(**data) if data else None
    except TypeError:  # written by another version: treat as absent
        return None


def read_verdict(checkout: Path) -> Verdict | None:
    data = _read(checkout / STATE_DIR / "probation.json")
    try:
        return Verdict(**data) if data else None
    except TypeError:
        return None


def read_request(checkout: Path) -> RestartRequest | None:
    data = _read(checkout / STATE_DIR / "restart.json")
    try:
        return RestartRequest(**data) if data else None
    except TypeError:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- git ---------------------------------------------------------------------------------


class Checkout:
    """A replica's git checkout: fetch, verify, switch, revert."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        try:
            self.repo = git.Repo(self.path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise NotACheckout(f"{self.path} is not a git checkout") from None

    @property
    def head(self) -> str:
        return self.repo.head.commit.hexsha

    def fetch(self, remote: str) -> None:
        if remote not in [r.name for r in self.repo.remotes]:
            raise FetchFailed(f"{self.path}: no git remote named {remote!r}")
        try:
            self.repo.git.fetch(remote, "--tags", "--force", "--quiet")
        except git.GitCommandError as exc:
            raise FetchFailed(f"fetching {remote!r} failed: {_stderr(exc)}") from None

    def resolve(self, ref: str) -> str:
        """The commit `ref` names (a branch, remote branch, tag or sha)."""
        if not _REF.match(ref):
            raise UnknownRef(f"{ref!r} is not a git ref")
        try:
            return self.repo.commit(ref).hexsha
        except (git.BadName, git.BadObject, ValueError, git.GitCommandError):
            raise UnknownRef(f"no commit named {ref!r} in {self.path} (after fetching)") from None

    def verify(self, ref: str, target: str, *, force: bool, signed: bool) -> None:
        """Refuse a dirty checkout, a target that is not a descendant, an unsigned tag."""
        self.ensure_clean()
        if signed:
            self._verify_tag(ref)
        if not force and not self.repo.is_ancestor(
            self.repo.commit(self.head), self.repo.commit(target)
        ):
            raise NotDescendant(
                f"{ref} ({target[:7]}) does not descend from the current commit "
                f"{self.head[:7]}: a downgrade or another branch (--force to switch anyway)"
            )

    def ensure_clean(self) -> None:
        if self.repo.is_dirty(untracked_files=False):
            changed = self.repo.git.status("--porcelain", "--untracked-files=no").splitlines()
            shown = ", ".join(line[3:] for line in changed[:5])
            raise DirtyCheckout(
                f"{self.path} has local changes ({shown}): commit or discard them first"
            )

    def _verify_tag(self, ref: str) -> None:
        name = ref.removeprefix("refs/tags/")
        if name not in [t.name for t in self.repo.tags]:
            raise UnsignedTag(f"{ref!r} is not a tag, and selfupdate.require_signed_tag is set")
        try:
            self.repo.git.verify_tag(name)
        except git.GitCommandError as exc:
            raise UnsignedTag(f"tag {name!r} has no valid signature: {_stderr(exc)}") from None

    def switch(self, target: str) -> str:
        """Detached checkout of `target`; returns (and records) the commit it replaced."""
        previous = self.head
        if previous != target:
            (state_dir(self.path) / "previous").write_text(previous + "\n")
            self.go_to(target)
        return previous

    def previous(self) -> str | None:
        try:
            return (self.path / STATE_DIR / "previous").read_text().strip() or None
        except OSError:
            return None

    def revert(self) -> str:
        """Back to the commit recorded by the last switch."""
        previous = self.previous()
        if previous is None:
            raise SelfUpdateError(f"{self.path}: no previous commit recorded to go back to")
        self.go_to(previous)
        return previous

    def go_to(self, commit: str) -> None:
        try:
            self.repo.git.checkout("--detach", "--quiet", commit)
        except git.GitCommandError as exc:
            raise SelfUpdateError(f"checkout of {commit[:7]} failed: {_stderr(exc)}") from None

    def dependencies_changed(self, old: str, new: str) -> list[str]:
        names = self.repo.git.diff("--name-only", old, new).splitlines()
        return [n for n in names if DEPENDENCY_FILES.search(n)]

    def version_at(self, commit: str) -> Version:
        """The version a commit holds, without checking it out."""
        try:
            init = self.repo.git.show(f"{commit}:troupe/__init__.py")
        except git.GitCommandError:
            init = ""
        match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", init, re.M)
        tags = self.repo.git.tag("--points-at", commit, "--sort=-v:refname").split()
        return Version(match.group(1) if match else "unknown", commit, tags[0] if tags else None)


def _stderr(exc: git.GitCommandError) -> str:
    text = str(exc.stderr or exc).strip()
    return text.removeprefix("stderr:").strip().strip("'").strip() or f"exit {exc.status}"


def reinstall(checkout: Path, python: str = sys.executable) -> None:
    """`python -m pip install -e .` in the checkout: the replica's own virtualenv when
    `python` is its interpreter (the default: the one running this)."""
    argv = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", "."]
    try:
        result = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            argv, cwd=checkout, capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallFailed(f"reinstalling dependencies failed: {exc}") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise InstallFailed("reinstalling dependencies failed: " + " / ".join(tail))


def switch_and_install(checkout: Checkout, target: str, python: str = sys.executable) -> str:
    """Switch to `target`; reinstall if its dependencies differ; on a failed install,
    switch back (and raise). Returns the previous commit."""
    previous = checkout.switch(target)
    if previous == target or not checkout.dependencies_changed(previous, target):
        return previous
    try:
        reinstall(checkout.path, python)
    except InstallFailed:
        checkout.revert()
        raise
    return previous


# ---- what to do (pure) ---------------------------------------------------------------------


Action = Literal["done", "wait", "reverted", "restart", "update"]


def decide(
    head: str,
    target: str,
    running: str | None,
    verdict: Verdict | None,
    force: bool,
) -> Action:
    """The next step of an idempotent self-update.

    `running`: the commit the supervisor's child was started on (None: no supervisor).
    """
    if verdict is not None and verdict.target == target:
        if verdict.verdict == "running":
            return "wait"
        if verdict.verdict == "reverted" and not force:
            return "reverted"
    if head == target:
        return "done" if running == target else "restart"
    return "update"


# ---- talking to the supervisor ---------------------------------------------------------------


def request_restart(checkout: Path, target: str, previous: str) -> RestartRequest:
    """Leave the request in `.troupe/restart.json` and wake the supervisor with SIGHUP."""
    state = read_supervisor(checkout)
    if state is None or not pid_alive(state.pid):
        raise NoSupervisor(
            f"no supervisor runs the replica of {checkout}: start it with `troupe run` "
            "(without --no-supervisor), or restart it yourself"
        )
    request = RestartRequest(uuid.uuid4().hex[:12], target, previous)
    write_json(state_dir(checkout) / "restart.json", request)
    os.kill(state.pid, signal.SIGHUP)
    return request


def wait_verdict(
    checkout: Path, target: str, timeout: float, request_id: str | None = None
) -> Verdict:
    """Poll `.troupe/probation.json` until the supervisor's verdict on `target` is in."""
    deadline = time.monotonic() + timeout
    while True:
        verdict = read_verdict(checkout)
        matches = verdict is not None and verdict.target == target
        if request_id is not None:
            matches = matches and verdict is not None and verdict.id == request_id
        if verdict is not None and matches and verdict.verdict != "running":
            return verdict
        if time.monotonic() > deadline:
            state = read_supervisor(checkout)
            alive = state is not None and pid_alive(state.pid)
            why = "" if alive else " and no supervisor is running for it"
            raise NoVerdict(f"no verdict on {target[:7]} after {timeout:g}s{why}")
        time.sleep(0.2)


def wait_taken(checkout: Path, request_id: str, timeout: float) -> None:
    """Wait until the supervisor has picked the request up (its verdict file names it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        verdict = read_verdict(checkout)
        if verdict is not None and verdict.id == request_id:
            return
        time.sleep(0.05)
    raise NoVerdict(f"the supervisor did not take the restart request in {timeout:g}s")


# ---- the command ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    ref: str
    checkout: Path
    force: bool
    wait: bool
    remote: str
    signed: bool
    timeout: float
    inside: bool  # this runs inside the replica it restarts


def run_update(options: Options) -> str:
    """The whole self-update; returns the line to print. Raises SelfUpdateError."""
    checkout = Checkout(options.checkout)
    checkout.fetch(options.remote)
    target = checkout.resolve(options.ref)
    state = read_supervisor(checkout.path)
    running = state.commit if state is not None and pid_alive(state.pid) else None
    verdict = read_verdict(checkout.path)
    action = decide(checkout.head, target, running, verdict, options.force)
    who = f"{state.replica}: " if state is not None else ""
    if action == "done":
        return who + _done_line(checkout, target, verdict)
    if action == "reverted":
        _reverted(verdict)
    request_id = None
    if action in ("update", "restart"):
        request_id = _switch_and_request(checkout, options, target, action, running)
        if options.inside:
            wait_taken(checkout.path, request_id, timeout=30)
            time.sleep(SELF_GRACE)  # so that our replica has seen the supervisor's SIGTERM
            return who + _arrow(
                checkout,
                running,
                target,
                "restarting this replica on probation; another replica finishes the command",
            )
    if not options.wait:
        return who + _arrow(checkout, running, target, "on probation")
    verdict = wait_verdict(checkout.path, target, options.timeout, request_id)
    if verdict.verdict == "reverted":
        _reverted(verdict)
    return who + _arrow(checkout, verdict.previous or running, target, "healthy")


def _switch_and_request(
    checkout: Checkout, options: Options, target: str, action: Action, running: str | None
) -> str:
    """Switch (for an update) and ask the supervisor to restart; the request's id."""
    if running is None:  # checked before changing anything
        raise NoSupervisor(
            f"no supervisor runs the replica of {checkout.path}: start it with "
            "`troupe run` (without --no-supervisor)"
        )
    if action == "update":
        checkout.verify(options.ref, target, force=options.force, signed=options.signed)
        previous = switch_and_install(checkout, target)
    else:  # switched earlier, never restarted: the previous commit is the recorded one
        previous = checkout.previous() or checkout.head
    return request_restart(checkout.path, target, previous).id


def _arrow(checkout: Checkout, old: str | None, new: str, how: str) -> str:
    before = checkout.version_at(old or checkout.head).label
    return f"{before} → {checkout.version_at(new).label} ({how})"


def _done_line(checkout: Checkout, target: str, verdict: Verdict | None) -> str:
    if verdict is not None and verdict.target == target and verdict.verdict == "healthy":
        return _arrow(checkout, verdict.previous, target, "healthy")
    return f"already runs {checkout.version_at(target).label}"


def check_healthy(path: Path) -> str:
    """The replica of this checkout runs its current commit and its /healthz says 200."""
    state = read_supervisor(path)
    if state is None or not pid_alive(state.pid):
        raise NoSupervisor(f"no supervisor runs the replica of {path}")
    checkout = Checkout(path)
    if state.commit != checkout.head or state.child_pid is None:
        raise SelfUpdateError(
            f"{state.replica} runs {state.commit[:7]} ({state.state}), "
            f"the checkout is at {checkout.head[:7]}"
        )
    try:
        with urllib.request.urlopen(state.health_url, timeout=5) as response:  # noqa: S310 - the supervisor's http URL
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise SelfUpdateError(f"{state.health_url}: {getattr(exc, 'reason', exc)}") from None
    if status != 200:
        raise SelfUpdateError(f"{state.replica} is not healthy: {state.health_url} said {status}")
    return f"{state.replica} is healthy on {checkout.version_at(checkout.head).label}"


def version_before(path: Path, ref: str) -> str:
    """The version the replica ran before it was switched to `ref`, if it was (a replica
    taking the command over captures this again after the switch); else the current one."""
    checkout = Checkout(path)
    verdict = read_verdict(checkout.path)
    with contextlib.suppress(UnknownRef):
        target = checkout.resolve(ref)
        if verdict is not None and verdict.target == target == checkout.head:
            return checkout.version_at(verdict.previous).label
    return describe(checkout.path).label


def _reverted(verdict: Verdict | None) -> NoReturn:
    reason = verdict.reason if verdict is not None else "no reason recorded"
    target = verdict.target[:7] if verdict is not None else "the target"
    raise Reverted(f"{target} was reverted: {reason} (the replica runs its previous version again)")


def _settings(config: Path | None, checkout: Path) -> SelfUpdateSettings:
    """troupe.yaml's `selfupdate` when given; else what the replica's supervisor uses."""
    if config is not None:
        return load_config(config).selfupdate
    state = read_supervisor(checkout)
    if state is None:
        return SelfUpdateSettings()
    return SelfUpdateSettings(
        remote=state.remote, probation=state.probation, require_signed_tag=state.require_signed_tag
    )


def _same(a: str | None, b: Path) -> bool:
    if not a:
        return False
    with contextlib.suppress(OSError):
        return Path(a).resolve() == b.resolve()
    return False


@click.command("self-update")
@click.argument("ref", required=False)
@click.option(
    "--checkout",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The replica's checkout (default: the one this troupe runs from).",
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="troupe.yaml to read `selfupdate` from (default: the replica's supervisor's).",
)
@click.option("--force", is_flag=True, help="Switch even to a non-descendant, or retry a revert.")
@click.option("--wait/--no-wait", default=True, help="Wait for the probation verdict.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the verdict.")
@click.option(
    "--current",
    is_flag=True,
    help="Print the checkout's version (with REF: the one before it was updated to REF).",
)
@click.option(
    "--healthy", "healthy", is_flag=True, help="Exit 0 if the replica runs the checkout, healthy."
)
@click.option("--caller-checkout", envvar="TROUPE_CHECKOUT", hidden=True, default=None)
def command(
    ref: str | None,
    checkout: Path | None,
    config_path: Path | None,
    force: bool,
    wait: bool,
    timeout: float | None,
    current: bool,
    healthy: bool,
    caller_checkout: str | None,
) -> None:
    """Update this replica's checkout to REF and restart it on probation.

    Exit 0 when the new version is healthy (or already runs), 1 when it was reverted or
    could not be switched, 2 on bad input."""
    where = (checkout or checkout_of_this_process()).resolve()
    if current:
        click.echo(version_before(where, ref) if ref else describe(where).label)
        return
    if healthy:
        click.echo(check_healthy(where))
        return
    settings = _settings(config_path, where)
    options = Options(
        ref=ref or settings.ref,
        checkout=where,
        force=force,
        wait=wait,
        remote=settings.remote,
        signed=settings.require_signed_tag,
        timeout=timeout if timeout is not None else settings.probation + settings.stop_timeout,
        inside=_same(caller_checkout, where),
    )
    if options.ref.startswith("-"):
        raise InputError(f"{options.ref!r} is not a git ref")
    click.echo(run_update(options))
