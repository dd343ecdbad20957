"""`troupe run` refuses to start with a clear one-line message, never a traceback: a bad
bot token, a bad app token, the HTTP port taken; and Slack unreachable is a SlackError."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient

from tests.conftest import OPS
from troupe.chat import Chat
from troupe.errors import SlackError
from troupe.localslack.server import ThreadedLocalSlack
from troupe.procs import free_port


def run_replica(tmp_path: Path, slack: Mapping[str, object], **tokens: str) -> tuple[int, str]:
    config = tmp_path / "troupe.yaml"
    config.write_text(yaml.safe_dump({"slack": {"channel": OPS, **slack}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROUPE_")} | tokens
    argv = [sys.executable, "-m", "troupe.cli", "run", "-c", str(config), "--no-supervisor"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("tokens", "said"),
    [
        (
            {"TROUPE_BOT_TOKEN": "xoxb-wrong", "TROUPE_APP_TOKEN": "xapp-troupe-a"},
            "troupe: Slack auth.test failed: invalid_auth",
        ),
        (
            {"TROUPE_BOT_TOKEN": "xoxb-troupe-a", "TROUPE_APP_TOKEN": "xapp-wrong"},
            "troupe: Slack apps.connections.open failed: invalid_auth",
        ),
    ],
    ids=["bot-token", "app-token"],
)
def test_bad_tokens(
    server: ThreadedLocalSlack, tmp_path: Path, tokens: dict[str, str], said: str
) -> None:
    code, output = run_replica(tmp_path, {"api_url": server.api_url}, **tokens)
    assert code == 1 and said in output, output
    assert "Traceback" not in output and "xoxb-troupe-a" not in output, output


def test_slack_unreachable_is_a_slack_error() -> None:
    """After its connection retries (about a minute in `troupe run`; none here, to keep
    the test fast) an unreachable Slack is a SlackError that names the address."""
    api_url = f"http://127.0.0.1:{free_port()}/api/"  # nothing listens there
    chat = Chat(WebClient(token="xoxb-troupe-a", base_url=api_url, retry_handlers=[]), OPS)
    with pytest.raises(SlackError, match=rf"Slack auth.test failed: cannot reach {api_url} \("):
        chat.call("auth.test")


def test_http_port_taken(server: ThreadedLocalSlack, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        slack = {"api_url": server.api_url, "delivery": "http", "http": {"port": port}}
        tokens = {"TROUPE_BOT_TOKEN": "xoxb-troupe-a", "TROUPE_SIGNING_SECRET": "s"}
        code, output = run_replica(tmp_path, slack, **tokens)
    assert code == 2, output
    assert f"troupe: cannot listen on 127.0.0.1:{port}:" in output, output
    assert "Traceback" not in output, output
