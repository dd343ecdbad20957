"""Shared fixtures: a real localslack server on loopback, on an ephemeral port."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from troupe.localslack.delivery import Timing
from troupe.localslack.server import Settings, ThreadedLocalSlack
from troupe.localslack.workspace import Workspace, default_workspace
from troupe.sshfleet import SshFleet

# Slack's reference samples: shared/ sits beside the repository (also in CI).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OPS = "C0OPS00001"
ALICE = "xoxp-alice"
BOT_A, BOT_B, BOT_C = "xoxb-troupe-a", "xoxb-troupe-b", "xoxb-troupe-c"
APP_A, APP_B, APP_C = "xapp-troupe-a", "xapp-troupe-b", "xapp-troupe-c"
# Short clocks so that redelivery tests take a second, not minutes.
FAST = Timing(ack_timeout=0.5, http_timeout=1.0, retry_delays=(0.0, 0.3, 0.6))

ServerFactory = Callable[..., ThreadedLocalSlack]


@pytest.fixture
def make_server() -> Iterator[ServerFactory]:
    """Start servers with custom settings; all are stopped at the end of the test."""
    started: list[ThreadedLocalSlack] = []

    def make(workspace: Workspace | None = None, **overrides: Any) -> ThreadedLocalSlack:
        settings = Settings(port=0, rate_limit_scale=0, timing=FAST)
        for key, value in overrides.items():
            setattr(settings, key, value)
        server = ThreadedLocalSlack(workspace or default_workspace(), settings).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: ServerFactory) -> ThreadedLocalSlack:
    """The default workspace, rate limits off, short delivery clocks."""
    return make_server()


@pytest.fixture
def client_for(server: ThreadedLocalSlack) -> Callable[[str], WebClient]:
    """A real slack_sdk WebClient for a token, pointed at the server by base_url only."""
    return lambda token: WebClient(token=token, base_url=server.api_url)


@pytest.fixture
def ssh_fleet() -> Iterator[Callable[[int], SshFleet]]:
    """Start SSH test fleets (`ssh_fleet(n)`: n sshd hosts on 127.0.1.x); all stopped at the end.

    Each fleet gets its own directory from mkdtemp: the test user must be able to read
    the client key and write its host directories, and pytest's tmp_path is private to root.
    """
    started: list[tuple[SshFleet, Path]] = []

    def make(n: int) -> SshFleet:
        workdir = Path(tempfile.mkdtemp(prefix="troupe-fleet-"))
        try:
            fleet = SshFleet(n, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        started.append((fleet, workdir))
        return fleet

    yield make
    for fleet, workdir in started:
        fleet.stop()
        shutil.rmtree(workdir, ignore_errors=True)
