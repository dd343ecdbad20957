"""Playbooks over a real SSH fleet: sshd processes on 127.0.1.x, the example playbooks
and the demo app, driven by the executor with FabricRemote."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from troupe.executor import Executor, Hooks
from troupe.inventory import Host, HostSpec, Inventory
from troupe.planner import make_plan
from troupe.playbooks import Playbook, load_playbook
from troupe.progress import BatchStarted, Event, HostState, RunOutcome, RunResult
from troupe.remote import connect
from troupe.sshfleet import SshFleet

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
APP_PORT = 18080  # every host has its own address, so they share the port number
Fleet = Callable[[int], SshFleet]


def with_app_port(fleet: SshFleet) -> Inventory:
    base = fleet.inventory()
    hosts = {
        name: HostSpec(address=spec.address, vars={**spec.vars, "app_port": APP_PORT})
        for name, spec in base.hosts.items()
    }
    return base.model_copy(update={"hosts": hosts})


def play(
    playbook: Playbook | str,
    inventory: Inventory,
    version: str,
    on_event: Callable[[Event], None] | None = None,
    approve: bool = True,
) -> RunResult:
    book = load_playbook(PLAYBOOKS / f"{playbook}.yaml") if isinstance(playbook, str) else playbook
    hosts = inventory.select(book.hosts)
    hooks = Hooks(on_event=on_event or (lambda e: None), approve=lambda request: approve)
    plan = make_plan(book, hosts, forks=10)
    executor = Executor(
        book, plan, hosts, {"version": version}, connect, hooks, files_dir=PLAYBOOKS
    )
    return executor.run()


def serving(host: Host) -> str:
    url = f"http://{host.address}:{APP_PORT}/version"
    with urllib.request.urlopen(url, timeout=2) as response:
        return str(response.read().decode().strip())


def intervals(root: Path) -> list[tuple[float, float]]:
    """(down, up) pairs from the demo app's events.log."""
    lines = (root / "events.log").read_text().split()
    stamps = [(lines[i], float(lines[i + 1])) for i in range(0, len(lines), 2)]
    downs = [t for kind, t in stamps if kind == "down"]
    ups = [t for kind, t in stamps if kind == "up"]
    return list(zip(downs, ups, strict=True))


def stop_apps(inventory: Inventory) -> None:
    for name in inventory.hosts:
        pid = Path(inventory.host(name).vars["root"]) / "app.pid"
        if pid.exists():
            subprocess.run(["kill", pid.read_text().strip()], check=False)


def test_rolling_update_over_ten_hosts(ssh_fleet: Fleet) -> None:
    fleet = ssh_fleet(10)
    inventory = with_app_port(fleet)
    started: list[tuple[str, ...]] = []
    try:
        result = play(
            "rolling-update",
            inventory,
            "1.0.0",
            on_event=lambda e: started.append(e.hosts) if isinstance(e, BatchStarted) else None,
        )
        assert result.outcome == RunOutcome.SUCCEEDED, result.reason
        assert started == [tuple(fleet.names[i : i + 3]) for i in range(0, 10, 3)]
        assert {serving(inventory.host(n)) for n in fleet.names} == {"1.0.0"}
        windows = {n: intervals(Path(inventory.host(n).vars["root"]))[0] for n in fleet.names}
        # Batches in order: every host of a batch was back up before the next batch began.
        for earlier, later in itertools.pairwise(started):
            assert max(windows[n][1] for n in earlier) < min(windows[n][0] for n in later)
        # Never more than max_unavailable (2) hosts out of service at once.
        for down, _ in windows.values():
            out = sum(1 for d, u in windows.values() if d <= down < u)
            assert out <= 2
    finally:
        stop_apps(inventory)


def test_canary_check_failure_rolls_back_only_the_canary(ssh_fleet: Fleet) -> None:
    fleet = ssh_fleet(4)
    inventory = with_app_port(fleet)
    try:
        assert play("rolling-update", inventory, "1.0.0").outcome == RunOutcome.SUCCEEDED
        canary = load_playbook(PLAYBOOKS / "canary.yaml")
        failing = canary.model_copy(
            update={
                "checks": {
                    "http_ok": canary.checks["http_ok"].model_copy(
                        update={
                            "http": None,
                            "body": None,
                            "retries": 0,
                            "command": "test ! -e {{ host.vars.root }}/broken",
                        }
                    )
                }
            }
        )
        first = inventory.host(fleet.names[0])
        (Path(first.vars["root"]) / "broken").touch()
        result = play(failing, inventory, "2.0.0")
        assert result.outcome == RunOutcome.FAILED
        assert "check http_ok failed on 1 of 1 hosts" in result.reason
        assert result.in_state(HostState.ROLLED_BACK) == [first.name]
        assert {serving(inventory.host(n)) for n in fleet.names} == {"1.0.0"}
        others = [Path(inventory.host(n).vars["root"]) for n in fleet.names[1:]]
        assert not any((root / "releases" / "2.0.0").exists() for root in others)
    finally:
        stop_apps(inventory)


def simple(tasks: list[dict[str, Any]], **strategy: Any) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "simple",
            "hosts": "web",
            "vars": {"version": {"required": True}},
            "tasks": tasks,
            "strategy": {"rolling": strategy or {"serial": 1}},
            "rollback": [{"name": "undo", "run": "echo undone > {{ host.vars.root }}/undone"}],
        }
    )


def test_killed_host_fails_clearly_and_the_policy_decides(ssh_fleet: Fleet) -> None:
    fleet = ssh_fleet(4)
    inventory = fleet.inventory()
    victim = fleet.names[1]

    def kill_in_batch_2(event: Event) -> None:
        if isinstance(event, BatchStarted) and event.number == 2:
            fleet.kill(1)

    book = simple([{"name": "step", "run": "sleep 0.5; echo {{ version }}"}])
    stopped = play(book, inventory, "1", on_event=kill_in_batch_2)
    assert stopped.outcome in (RunOutcome.FAILED, RunOutcome.ROLLBACK_INCOMPLETE)
    assert stopped.hosts[victim].state in (HostState.ROLLED_BACK, HostState.ROLLBACK_FAILED)
    assert victim in (stopped.hosts[victim].error or "") or stopped.hosts[victim].error
    assert stopped.in_state(HostState.PENDING) == fleet.names[2:]  # the rollout stopped

    fleet2 = ssh_fleet(4)
    tolerant = simple(
        [{"name": "step", "run": "sleep 0.5; echo {{ version }}"}],
        serial=1,
        max_fail_percentage=100,
    )

    def kill_second(event: Event) -> None:
        if isinstance(event, BatchStarted) and event.number == 2:
            fleet2.kill(1)

    going = play(tolerant, fleet2.inventory(), "1", on_event=kill_second)
    assert going.outcome == RunOutcome.SUCCEEDED  # the policy tolerates failed hosts
    assert going.in_state(HostState.FAILED) == [fleet2.names[1]]
    assert going.in_state(HostState.OK) == [n for n in fleet2.names if n != fleet2.names[1]]


def test_hanging_command_is_cut_by_its_timeout(ssh_fleet: Fleet) -> None:
    fleet = ssh_fleet(1)
    book = simple([{"name": "hang", "run": "sleep 60", "timeout": "1s"}])
    result = play(book, fleet.inventory(), "1")
    host = result.hosts[fleet.names[0]]
    assert host.step == "hang" and "timed out after 1s" in (host.error or "")
    assert result.outcome == RunOutcome.FAILED  # and it was rolled back
    assert (Path(fleet.inventory().host(fleet.names[0]).vars["root"]) / "undone").exists()


def test_sudo_and_injection(ssh_fleet: Fleet, tmp_path: Path) -> None:
    fleet = ssh_fleet(1)
    inventory = fleet.inventory()
    root = Path(inventory.host(fleet.names[0]).vars["root"])
    book = simple(
        [
            {"name": "as root", "run": "id -u > {{ host.vars.root }}/uid", "sudo": True},
            {"name": "as user", "run": "id -u > {{ host.vars.root }}/user-uid"},
            {"name": "record", "run": "echo {{ version }} > {{ host.vars.root }}/version"},
        ]
    )
    result = play(book, inventory, "1.0; touch pwned")
    assert result.outcome == RunOutcome.SUCCEEDED, result.reason
    assert (root / "uid").read_text().strip() == "0"
    assert (root / "user-uid").read_text().strip() != "0"
    assert (root / "version").read_text().strip() == "1.0; touch pwned"
    assert not list(root.rglob("pwned")) and not (Path.home() / "pwned").exists()


def test_troupe_play_from_the_command_line(ssh_fleet: Fleet, tmp_path: Path) -> None:
    fleet = ssh_fleet(3)
    inventory = with_app_port(fleet)
    config = tmp_path / "troupe.yaml"
    config.write_text(
        yaml.safe_dump({"inventory": inventory.model_dump(mode="json", exclude_none=True)})
    )
    shutil.copytree(PLAYBOOKS, tmp_path / "playbooks")
    command = [sys.executable, "-m", "troupe.cli", "play", "rolling-update", "-c", str(config)]
    try:
        ok = subprocess.run(
            [*command, "-e", "version=1.2.3"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "Succeeded" in ok.stdout and "ok: host01, host02, host03" in ok.stdout
        bad = subprocess.run(
            [*command, "-e", "version=1.0; touch pwned"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert bad.returncode == 2
        assert "variable 'version' must match" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        stop_apps(inventory)


def test_interrupt_stops_between_steps(ssh_fleet: Fleet) -> None:
    fleet = ssh_fleet(3)
    stop = threading.Event()
    book = simple([{"name": "a", "run": "sleep 0.3"}, {"name": "b", "run": "true"}])
    hosts = fleet.inventory().select("web")
    hooks = Hooks(
        on_event=lambda e: stop.set() if isinstance(e, BatchStarted) and e.number == 2 else None,
        stop=stop,
    )
    result = Executor(book, make_plan(book, hosts), hosts, {"version": "1"}, connect, hooks).run()
    assert result.outcome == RunOutcome.INTERRUPTED
    assert result.in_state(HostState.OK) == [fleet.names[0]]
    assert result.in_state(HostState.PENDING) == fleet.names[1:]
