"""/healthz and /metrics of a real replica: `troupe run` as a process against localslack.

The replica is started by the e2e harness (tests/e2e/fleet.py) and finds its health
port itself (health.port 0); the test reads the address from the log line that says it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import OPS, ServerFactory
from tests.e2e.fleet import (
    Fleet,
    LocalSlack,
    Person,
    Timings,
    free_port,
    identities,
    poll,
    stop_process,
)
from tests.integration.test_deploy_assets import dockerfile_healthcheck
from troupe import __version__, version
from troupe.health import HealthServer, HealthServerError, Vitals
from troupe.localslack.workspace import HttpDelivery, default_workspace

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# A quick sweeper (the stall limit is 3 sweeps + 5 s), and a lease long enough that a
# rate-limit wait or a loaded machine never lets this single replica's claim lapse
# (which would count a takeover of its own command).
TIMINGS = Timings(lease=30.0, heartbeat=10.0, settle=0.3, orphan_grace=5.0, sweep_interval=1.0)
METRIC_NAMES = [
    "troupe_commands_claimed_total",
    "troupe_claims_lost_total",
    "troupe_takeovers_total",
    "troupe_deploy_seconds",
    "troupe_slack_api_errors_total",
    "troupe_rate_limit_waits_total",
    "troupe_rate_limit_wait_seconds_total",
    "troupe_build_info",
]


class Single:
    """localslack and one replica; `url` is the replica's health server."""

    def __init__(self, root: Path) -> None:
        who = identities(["replica-1"], shared=False)
        self.slack = LocalSlack(root, who.values(), ["--rate-limits", "off"])
        self.fleet = Fleet(root, self.slack, who, ledger_hosts=1, slow_hosts=1, timings=TIMINGS)
        self.replica = self.fleet.replicas["replica-1"]
        self.url = ""

    def start(self) -> Single:
        self.slack.start()
        self.fleet.start()
        self.url = poll(self._health_url, 10, "the health address in the log", 0.1)
        return self

    def _health_url(self) -> str | None:
        match = re.search(r"health at (http://127\.0\.0\.1:\d+)/healthz", self.replica.log())
        return match[1] if match else None

    def healthz(self) -> tuple[int, dict[str, Any]]:
        response = requests.get(self.url + "/healthz", timeout=5)
        return response.status_code, response.json()

    def metrics(self) -> str:
        response = requests.get(self.url + "/metrics", timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.text

    def log(self) -> str:
        return f"{self.healthz()}\n{self.replica.log(40)}"

    def stop(self) -> None:
        self.fleet.stop()
        self.slack.stop()


@pytest.fixture
def single(tmp_path: Path) -> Iterator[Single]:
    one = Single(tmp_path)
    try:
        yield one.start()
    finally:
        one.stop()


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if head.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def test_healthy_replica_reports_ok_and_counts_what_it_did(single: Single) -> None:
    status, body = single.healthz()
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["replica"] == "replica-1"
    assert body["version"] == version.current().label
    assert body["connected"] is True
    assert 0 <= body["alive_age"] < 3 * TIMINGS.sweep_interval + 5

    # The claim's pins.add fails once (an error), then waits out a 429 on the retry.
    single.slack.put_faults(
        {
            "errors": [
                {"method": "pins.add", "error": "channel_not_found", "count": 1},
                {
                    "method": "pins.add",
                    "error": "ratelimited",
                    "status": 429,
                    "count": 1,
                },
            ]
        }
    )
    ts = Person(single.slack.api_url).deploy("ledger", "health-1")
    single.fleet.wait_done([ts], timeout=60)

    text = single.metrics()
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in text, name
    assert _sample(text, "troupe_build_info", version=__version__, replica="replica-1") == 1
    errors = _sample(
        text, "troupe_slack_api_errors_total", method="pins.add", error="channel_not_found"
    )
    assert errors == 1
    assert _sample(text, "troupe_rate_limit_waits_total", method="pins.add") == 1
    assert _sample(text, "troupe_rate_limit_wait_seconds_total") > 0
    assert _sample(text, "troupe_takeovers_total") == 0
    assert _sample(text, "troupe_commands_claimed_total", verb="deploy") == 1
    assert _sample(text, "troupe_deploy_seconds_count", outcome="succeeded") == 1


def _image_healthcheck(single: Single) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, run here against the replica's port."""
    command, port = dockerfile_healthcheck()
    argv = [a.replace(f":{port}/", f":{single.url.rsplit(':', 1)[1]}/") for a in command]
    assert argv[0] == "python"
    return subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=30)


def test_replica_without_slack_turns_unhealthy(single: Single) -> None:
    """localslack gone: the Socket Mode connection is lost, and /healthz says so (503);
    the image's HEALTHCHECK passes before and fails after."""
    assert single.healthz()[0] == 200
    before = _image_healthcheck(single)
    assert before.returncode == 0, before.stdout + before.stderr
    single.slack.stop()

    def disconnected() -> dict[str, Any] | None:
        status, body = single.healthz()
        return body if status == 503 and body["connected"] is False else None

    # Socket Mode pings every 5 s: three without a pong (or a closed socket) is down.
    body = poll(disconnected, 40, "/healthz to say 503, not connected", 0.25, single.log)
    assert body["status"] == "unhealthy"
    assert body["connected"] is False
    assert "not connected to Slack" in body["reason"]
    assert body["replica"] == "replica-1"
    after = _image_healthcheck(single)
    assert after.returncode == 1 and "HTTP 503" in after.stderr, after.stdout + after.stderr


def test_a_health_port_in_use_is_a_clear_error() -> None:
    """The runner binds before it connects: a taken port is one clear line, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HealthServerError, match=f"on 127.0.0.1:{port}: Address already in use"):
            HealthServer("127.0.0.1", port, lambda: Vitals("r", "v", True, 0.0, 1.0), time.time)


def test_health_server_answers_while_starting_and_404_elsewhere() -> None:
    """Until the replica is connected, /healthz says so (503); unknown paths are 404."""
    vitals = Vitals("replica-x", __version__, False, time.time(), 15.0)
    server = HealthServer("127.0.0.1", 0, lambda: vitals, time.time).start()
    try:
        response = requests.get(server.url + "/healthz", timeout=5)
        assert response.status_code == 503
        assert response.json()["reason"] == "not connected to Slack"
        assert response.headers["Content-Type"] == "application/json"
        assert requests.get(server.url + "/nope", timeout=5).status_code == 404
        probe = subprocess.run(
            [sys.executable, "-m", "troupe.health", server.url + "/healthz"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 1, "the HEALTHCHECK must fail on 503"
        assert "HTTP 503" in probe.stderr
    finally:
        server.close()


def test_http_delivery_replica_is_healthy_under_its_supervisor(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """`troupe run` as operators start it (under the supervisor), Events API delivery,
    --health-port given: the child serves there, connected once its listener is up."""
    events_port, health_port = free_port(), free_port()
    base = default_workspace()
    url = f"http://127.0.0.1:{events_port}/slack/events"
    app = base.apps[0].model_copy(update={"delivery": HttpDelivery.model_validate({"http": url})})
    server = make_server(base.model_copy(update={"apps": [app]}))
    config = tmp_path / "troupe.yaml"
    slack = {
        "channel": OPS,
        "api_url": server.api_url,
        "delivery": "http",
        "http": {"port": events_port},
        "fleet": ["U0TROUPEA"],
    }
    config.write_text(yaml.safe_dump({"slack": slack}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROUPE_")}
    env |= {"TROUPE_BOT_TOKEN": "xoxb-troupe-a", "TROUPE_SIGNING_SECRET": "s3cr3t-a"}
    argv = [sys.executable, "-m", "troupe.cli", "run", "-c", str(config), "--replica", "troupe-a"]
    log = tmp_path / "replica.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, "--health-port", str(health_port)], env=env, stdout=out, stderr=out
        )
    try:

        def healthy() -> dict[str, Any] | None:
            with contextlib.suppress(requests.RequestException):
                response = requests.get(f"http://127.0.0.1:{health_port}/healthz", timeout=2)
                return response.json() if response.status_code == 200 else None
            return None

        body = poll(healthy, 60, "/healthz to answer 200", 0.25, lambda: log.read_text())
        assert body["replica"] == "troupe-a" and body["connected"] is True
    finally:
        stop_process(proc, grace=30)
