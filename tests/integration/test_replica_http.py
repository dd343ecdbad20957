"""A replica over the Events API (HTTP): bolt checks every request's signature."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient

from tests.conftest import ALICE, OPS, ServerFactory
from tests.integration.helpers import wait_for
from tests.integration.test_cli_localslack import free_port
from troupe import version
from troupe.localslack.server import ThreadedLocalSlack
from troupe.localslack.workspace import HttpDelivery, default_workspace


def write_config(tmp_path: Path, api_url: str, port: int) -> Path:
    (tmp_path / "playbooks").mkdir()
    config = {
        "slack": {
            "channel": OPS,
            "api_url": api_url,
            "delivery": "http",
            "http": {"port": port},
            "fleet": ["U0TROUPEA"],
            "prefix": "troupe",
            "sweep_interval": "60s",
        }
    }
    path = tmp_path / "troupe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def http_replica(
    make_server: ServerFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[ThreadedLocalSlack, subprocess.Popen[str]]]:
    secret = getattr(request, "param", "s3cr3t-a")
    port = free_port()
    base = default_workspace()
    url = f"http://127.0.0.1:{port}/slack/events"
    app = base.apps[0].model_copy(update={"delivery": HttpDelivery.model_validate({"http": url})})
    server = make_server(base.model_copy(update={"apps": [app]}))
    config = write_config(tmp_path, server.api_url, port)
    env = {**os.environ, "TROUPE_BOT_TOKEN": "xoxb-troupe-a", "TROUPE_SIGNING_SECRET": secret}
    proc = subprocess.Popen(
        [sys.executable, "-m", "troupe.cli", "run", "-c", str(config), "--replica", "troupe-a"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "ready in" in line:
            break
    yield server, proc
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


def test_roll_call_over_http(
    http_replica: tuple[ThreadedLocalSlack, subprocess.Popen[str]],
) -> None:
    server, _ = http_replica
    alice = WebClient(token=ALICE, base_url=server.api_url)
    ts = alice.chat_postMessage(channel=OPS, text="troupe roll call")["ts"]

    def replies() -> list[str]:
        return [m["text"] for m in alice.conversations_replies(channel=OPS, ts=ts)["messages"][1:]]

    answered = wait_for(replies, timeout=20, what="a roll call answer")
    assert answered == [
        f":raising_hand: *troupe-a* here · version {version.current().label} · idle"
    ]
    outcomes = {
        a["outcome"] for d in server.call(lambda: server.server.log.list()) for a in d["attempts"]
    }
    assert outcomes == {"ok"}  # every delivery passed bolt's signature check


@pytest.mark.parametrize("http_replica", ["not-the-secret"], indirect=True)
def test_a_wrong_signature_is_refused(
    http_replica: tuple[ThreadedLocalSlack, subprocess.Popen[str]],
) -> None:
    server, _ = http_replica
    alice = WebClient(token=ALICE, base_url=server.api_url)
    ts = alice.chat_postMessage(channel=OPS, text="troupe roll call")["ts"]
    refused = wait_for(
        lambda: [
            d for d in server.call(lambda: server.server.log.list()) if d["state"] == "failed"
        ],
        timeout=20,
        what="the delivery to be refused",
    )
    assert refused[0]["attempts"][0]["outcome"] == "http_401"
    time.sleep(0.5)
    assert alice.conversations_replies(channel=OPS, ts=ts)["messages"][1:] == []
