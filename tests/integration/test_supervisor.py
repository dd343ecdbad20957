"""troupe.supervisor as a real process over a real git checkout, with a small stand-in
for the replica (`app.py`: serves /healthz, or not, as its commit says), driven by the
real `troupe self-update` command: restarts, probation, revert, signals, idempotence."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.fleet import free_port, poll, stop_process, tail
from tests.integration.gitrepos import Origin, git
from troupe.selfupdate import (
    Checkout,
    Verdict,
    read_supervisor,
    read_verdict,
    state_dir,
    write_json,
)

pytestmark = pytest.mark.integration

# The replica stand-in. MODE: "ok" serves /healthz; "broken" cannot start; "sick" runs
# but never answers. It writes a line to ../events on start and on SIGTERM.
APP = """\
import http.server, os, signal, sys
MODE = {mode!r}
port = int(sys.argv[1])
events = os.path.join(os.path.dirname(os.getcwd()), "events")
def note(what):
    with open(events, "a") as f:
        f.write(f"{{what}} {{os.getpid()}} {{MODE}}\\n")
if MODE == "broken":
    print("ImportError: broken on purpose", flush=True)
    sys.exit(3)
note("start")
def stop(signum, frame):
    note("sigterm")
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if MODE == "ok" else 503)
        self.end_headers()
    def log_message(self, *a):
        pass
print("app up", MODE, flush=True)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""

DRIVER = """\
import json, sys
from pathlib import Path
from troupe.config import SelfUpdateSettings
from troupe.supervisor import Setup, supervise
a = json.loads(sys.argv[1])
settings = SelfUpdateSettings(probation=a["probation"], stop_timeout=5)
setup = Setup(a["argv"], Path(a["checkout"]), "replica-x", a["url"], settings, a["env"])
sys.exit(supervise(setup))
"""


def app(mode: str) -> dict[str, str]:
    return {"app.py": APP.format(mode=mode)}


class Supervised:
    def __init__(self, root: Path, checkout: Path, probation: float = 4.0) -> None:
        self.root = root
        self.checkout = checkout
        self.port = free_port()
        self.log_path = root / "supervisor.log"
        args = {
            "argv": [sys.executable, "app.py", str(self.port)],
            "checkout": str(checkout),
            "url": f"http://127.0.0.1:{self.port}/healthz",
            "probation": probation,
            "env": dict(os.environ),
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", DRIVER, json.dumps(args)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        poll(lambda: self.events("start"), 20, "the first child", explain=self.log)

    def log(self) -> str:
        return tail(self.log_path)

    def events(self, kind: str) -> list[str]:
        path = self.root / "events"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if line.startswith(kind + " ")]

    def self_update(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "troupe.cli", "self-update", "--checkout", str(self.checkout)]
        env = {k: v for k, v in os.environ.items() if k != "TROUPE_CHECKOUT"}
        return subprocess.run(
            [*argv, "--timeout", "30", *args], capture_output=True, text=True, env=env
        )


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Origin, Supervised]]:
    origin = Origin(tmp_path / "repo")
    origin.commit(app("ok") | {"version.txt": "1\n"}, "first")
    clone = origin.clone(tmp_path / "clone")
    supervised = Supervised(tmp_path, clone)
    try:
        yield origin, supervised
    finally:
        stop_process(supervised.proc, grace=15)


def test_update_restarts_on_probation_and_reports_healthy(
    fleet: tuple[Origin, Supervised],
) -> None:
    origin, sup = fleet
    second = origin.commit({"version.txt": "2\n"}, "second")
    result = sup.self_update()
    assert result.returncode == 0, result.stderr + sup.log()
    assert "(healthy)" in result.stdout and "replica-x:" in result.stdout
    assert Checkout(sup.checkout).head == second
    assert len(sup.events("start")) == 2 and len(sup.events("sigterm")) == 1
    verdict = read_verdict(sup.checkout)
    assert verdict is not None and verdict.verdict == "healthy" and verdict.target == second
    state = read_supervisor(sup.checkout)
    assert state is not None and state.commit == second and state.state == "running"
    # Idempotent: asked again (a replica that took the command over), nothing restarts.
    again = sup.self_update()
    assert again.returncode == 0 and again.stdout == result.stdout, again.stderr
    assert len(sup.events("start")) == 2
    healthy = sup.self_update("--healthy")
    assert healthy.returncode == 0 and "replica-x is healthy" in healthy.stdout


def test_a_broken_commit_is_reverted_within_the_probation(
    fleet: tuple[Origin, Supervised],
) -> None:
    origin, sup = fleet
    first = Checkout(sup.checkout).head
    broken = origin.commit(app("broken"), "broken")
    result = sup.self_update()
    assert result.returncode == 1, result.stdout
    assert f"{broken[:7]} was reverted: it exited with code 3: ImportError: broken on purpose" in (
        result.stderr
    )
    assert Checkout(sup.checkout).head == first
    poll(lambda: len(sup.events("start")) == 2, 10, "the old version to run again")
    assert sup.self_update("--healthy").returncode == 0
    assert "failed probation" in sup.log()
    # The same target again: the same verdict, without another try...
    again = sup.self_update()
    assert again.returncode == 1 and "was reverted" in again.stderr
    assert len(sup.events("start")) == 2
    # ...unless forced.
    forced = sup.self_update("--force")
    assert forced.returncode == 1 and "was reverted" in forced.stderr
    assert len(sup.events("start")) == 3


def test_a_version_that_never_reports_healthy_is_reverted_after_the_probation(
    fleet: tuple[Origin, Supervised],
) -> None:
    origin, sup = fleet
    first = Checkout(sup.checkout).head
    origin.commit(app("sick"), "sick")
    result = sup.self_update()
    assert result.returncode == 1
    assert "did not report healthy within 4s" in result.stderr
    assert Checkout(sup.checkout).head == first
    assert [line.split()[2] for line in sup.events("start")] == ["ok", "sick", "ok"]


def test_a_child_that_exits_is_restarted_and_sigterm_is_forwarded(
    fleet: tuple[Origin, Supervised],
) -> None:
    _, sup = fleet
    pid = int(sup.events("start")[0].split()[1])
    os.kill(pid, signal.SIGKILL)
    poll(lambda: len(sup.events("start")) == 2, 15, "a restart", explain=sup.log)
    assert re.search(r"replica-x exited unexpectedly with code -9 .*; restarting in 1s", sup.log())
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(timeout=15) == 0
    assert len(sup.events("sigterm")) == 1
    state = read_supervisor(sup.checkout)
    assert state is not None and state.state == "stopping"


@pytest.mark.parametrize("dirty", [False, True], ids=["clean", "dirty"])
def test_a_probation_left_by_a_dead_supervisor_is_continued(tmp_path: Path, dirty: bool) -> None:
    """Killed mid-probation and started again (by systemd, say): the new supervisor
    finishes the probation, here reverting a version that never becomes healthy; unless
    the checkout has local changes, which are not its to switch away from."""
    origin = Origin(tmp_path / "repo")
    first = origin.commit(app("ok") | {"version.txt": "1\n"}, "first")
    sick = origin.commit(app("sick"), "sick")
    clone = origin.clone(tmp_path / "clone")
    git(clone, "checkout", "--quiet", "--detach", sick)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state_dir(clone)
    write_json(
        clone / ".troupe" / "probation.json", Verdict("r1", sick, first, "running", "", dead.pid)
    )
    if dirty:
        (clone / "version.txt").write_text("local change\n")
    sup = Supervised(tmp_path, clone)
    try:
        if dirty:
            assert "not continuing the probation" in sup.log()
            state = read_supervisor(clone)
            assert state is not None and state.state == "running"
            assert Checkout(clone).head == sick
        else:
            poll(lambda: _verdict_is(clone, "reverted"), 20, "a revert", explain=sup.log)
            assert Checkout(clone).head == first
    finally:
        stop_process(sup.proc, grace=15)


def _verdict_is(checkout: Path, wanted: str) -> bool:
    verdict = read_verdict(checkout)
    return verdict is not None and verdict.verdict == wanted
