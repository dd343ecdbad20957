"""`troupe sandbox`: Ctrl-C stops every process it started, including the demo apps its
playbooks left running on the hosts, and nothing else."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from slack_sdk import WebClient

from tests.e2e.fleet import poll
from tests.e2e.sandbox import SandboxProcess
from troupe import procs

pytestmark = pytest.mark.integration  # real processes on loopback

OPS = "C0OPS00001"


@pytest.fixture
def sentinel() -> Iterator[subprocess.Popen[bytes]]:
    """A process the sandbox did not start, whose command line looks like a replica's:
    it must survive the sandbox's Ctrl-C (nothing is stopped by name)."""
    argv = [sys.executable, "-c", "import time; time.sleep(300)", "troupe.cli", "run"]
    proc = subprocess.Popen(argv)
    yield proc
    proc.kill()
    proc.wait()


def _done(api_url: str, ts: str) -> bool:
    url = api_url.removesuffix("/api/") + "/admin/reactions"
    reactions = requests.get(url, params={"channel": OPS}, timeout=5).json()
    return any(r["ts"] == ts and r["name"] in {"white_check_mark", "x"} for r in reactions)


@pytest.mark.timeout(180)
def test_ctrl_c_stops_everything_the_sandbox_started_and_nothing_else(
    tmp_path: Path, sentinel: subprocess.Popen[bytes]
) -> None:
    box = SandboxProcess(
        tmp_path / "sandbox.out",
        *("--replicas", "2", "--hosts", "2", "--fleet", "local", "--shared-app"),
        *("--rate-limits", "off"),
    )
    try:
        alice = WebClient(token="xoxp-alice", base_url=box.api_url)
        ts = alice.chat_postMessage(channel=OPS, text="troupe deploy rolling-update version=1.0.0")
        poll(lambda: _done(box.api_url, ts["ts"]), 60, "the deploy to finish", explain=box.logs)

        started = {pid: procs.cmdline(pid) for pid in procs.descendants(box.proc.pid)}
        lines = list(started.values())
        assert sum("troupe.cli localslack" in c for c in lines) == 1, lines
        assert sum("troupe.cli run" in c for c in lines) >= 2, lines
        # The demo app of each host: left running by the playbook, re-parented to the sandbox.
        assert sum("current/app.py" in c for c in lines) == 2, lines

        assert box.interrupt() == 0, box.output()
        assert "sandbox stopped" in box.output()
        left = {pid: cmd for pid, cmd in started.items() if procs.alive(pid)}
        assert not left, f"still running after Ctrl-C: {left}"
        assert sentinel.poll() is None, "the sandbox stopped a process it did not start"
    finally:
        box.close()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--shared-app", "--replicas", "11"], "--shared-app allows at most 10 replicas"),
        (["--dir", "{full}"], "is not empty; the sandbox needs an empty or new directory"),
        (["--replicas", "0"], "Invalid value for '--replicas'"),
    ],
    ids=["shared-app-limit", "dir-not-empty", "no-replicas"],
)
def test_bad_options_are_refused_with_a_clear_message_before_anything_starts(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("mine\n")
    argv = [*procs.TROUPE, "sandbox", *(f.format(full=full) for f in flags)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "starting the sandbox" not in done.stdout
    assert (full / "something").read_text() == "mine\n"
