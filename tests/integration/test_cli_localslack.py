"""`troupe localslack` as a user runs it: a real process, its output and exit codes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from slack_sdk import WebClient

from tests.conftest import ALICE, OPS
from tests.integration.helpers import wait_for

TROUPE = [sys.executable, "-m", "troupe.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_troupe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `troupe ARGS` to completion (for commands expected to exit by themselves)."""
    return subprocess.run([*TROUPE, *args], capture_output=True, text=True, timeout=30)


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [*TROUPE, "localslack", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/api/"

    def up() -> bool:
        try:
            return bool(WebClient(base_url=url).api_test()["ok"])
        except Exception:
            assert proc.poll() is None, proc.communicate()
            return False

    wait_for(up, timeout=20, what="localslack to start")
    return proc, url


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out, err


def test_default_workspace_prints_how_to_connect_and_tokens() -> None:
    proc, url = start()
    code, out, err = stop(proc)
    assert code == 0, err
    assert f"base_url: {url}" in out
    assert "xoxp-alice" in out and "xoxb-troupe-a" in out and "xapp-troupe-c" in out
    assert "#ops C0OPS00001" in out
    assert "Traceback" not in err


def test_state_survives_a_clean_restart(tmp_path: Path) -> None:
    state = tmp_path / "slack.json"
    proc, url = start("--state", str(state))
    alice = WebClient(token=ALICE, base_url=url)
    ts = alice.chat_postMessage(channel=OPS, text="remember me")["ts"]
    alice.pins_add(channel=OPS, timestamp=ts)
    alice.reactions_add(channel=OPS, timestamp=ts, name="eyes")
    code, out, _ = stop(proc)
    assert code == 0 and "state saved" in out

    proc, url = start("--state", str(state))
    try:
        alice = WebClient(token=ALICE, base_url=url)
        message = alice.conversations_history(channel=OPS)["messages"][0]
        assert (message["ts"], message["text"]) == (ts, "remember me")
        assert message["reactions"][0]["name"] == "eyes"
        assert [i["message"]["ts"] for i in alice.pins_list(channel=OPS)["items"]] == [ts]
        later = alice.chat_postMessage(channel=OPS, text="after restart")["ts"]
        assert later > ts
    finally:
        stop(proc)


def test_malformed_workspace_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "ws.yaml"
    bad.write_text(
        "team: {id: T0TROUPE, name: dev}\n"
        "users:\n"
        "  - {id: U0ALICE, name: alice, token: xoxp-a}\n"
        "channels:\n"
        "  - {id: C0OPS, name: ops, members: [U0ALICE]}\n"
    )
    result = run_troupe("localslack", "--workspace", str(bad), "--port", "0")
    assert result.returncode == 2
    assert f"{bad}: line 5: channels[0].id" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_file_and_bad_flags_exit_2(tmp_path: Path) -> None:
    missing = run_troupe("localslack", "--workspace", str(tmp_path / "nope.yaml"))
    flag = run_troupe("localslack", "--error", "no-equals-sign")
    assert missing.returncode == flag.returncode == 2
    assert "cannot read file" in missing.stderr
    assert "METHOD=CODE" in flag.stderr
    assert "Traceback" not in missing.stderr + flag.stderr


def test_port_in_use_is_reported_clearly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_troupe("localslack", "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_state_file_in_a_missing_directory_is_refused_at_start(tmp_path: Path) -> None:
    state = tmp_path / "no-such-dir" / "slack.json"
    result = run_troupe("localslack", "--port", "0", "--state", str(state))
    assert result.returncode == 1
    assert f"cannot write state file {state}" in result.stderr
    assert "Traceback" not in result.stderr
