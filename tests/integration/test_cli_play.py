"""`troupe play` and `troupe plan` as a person runs them, on local hosts (connection: local)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import yaml

TROUPE = [sys.executable, "-m", "troupe.cli"]


def local_fleet(tmp_path: Path, n: int = 3) -> Path:
    """A troupe.yaml whose hosts are directories on this machine."""
    roots = {f"web{i}": tmp_path / f"web{i}" for i in range(1, n + 1)}
    hosts = {
        name: {"connection": "local", "vars": {"root": str(root)}} for name, root in roots.items()
    }
    for root in roots.values():
        root.mkdir()
    config = {"inventory": {"hosts": hosts, "groups": {"web": list(hosts)}}}
    path = tmp_path / "troupe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def playbook(tmp_path: Path, tasks: list[dict[str, object]], **extra: object) -> Path:
    book = {
        "name": "demo",
        "hosts": "web",
        "vars": {"version": {"required": True, "pattern": r"^\d+\.\d+$"}},
        "strategy": {"rolling": {"serial": 1}},
        "tasks": tasks,
        **extra,
    }
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(book))
    return path


def test_play_on_local_hosts_and_exit_codes(tmp_path: Path) -> None:
    config = local_fleet(tmp_path)
    book = playbook(
        tmp_path, [{"name": "write", "run": "echo {{ version }} > {{ host.vars.root }}/v"}]
    )
    ok = subprocess.run(
        [*TROUPE, "play", str(book), "-c", str(config), "-e", "version=1.2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "batch 1: web1" in ok.stdout and "Succeeded" in ok.stdout
    assert (tmp_path / "web3" / "v").read_text() == "1.2\n"
    failing = playbook(
        tmp_path,
        [{"name": "boom", "run": "test {{ host.name }} != web2"}],
        rollback=[{"name": "undo", "run": "touch {{ host.vars.root }}/undone"}],
    )
    failed = subprocess.run(
        [*TROUPE, "play", str(failing), "-c", str(config), "-e", "version=1.2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert "Failed" in failed.stdout and "rolled back: web1, web2" in failed.stdout
    assert sorted(p.parent.name for p in tmp_path.glob("web*/undone")) == ["web1", "web2"]


def test_plan_prints_batches_without_touching_hosts(tmp_path: Path) -> None:
    config = local_fleet(tmp_path)
    book = playbook(tmp_path, [{"name": "write", "run": "touch {{ host.vars.root }}/touched"}])
    shown = subprocess.run(
        [*TROUPE, "plan", str(book), "-c", str(config), "-e", "version=1.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "1. batch 1: web1" in shown.stdout and "3. batch 3: web3" in shown.stdout
    assert not list(tmp_path.glob("web*/touched"))


def test_missing_config_and_bad_variable_are_input_errors(tmp_path: Path) -> None:
    book = playbook(tmp_path, [{"run": "true"}])
    missing = subprocess.run(
        [*TROUPE, "plan", str(book), "-c", str(tmp_path / "nope.yaml"), "-e", "version=1.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "no configuration file" in missing.stderr
    config = local_fleet(tmp_path)
    bad = subprocess.run(
        [*TROUPE, "play", str(book), "-c", str(config), "-e", "version=$(reboot)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "must match" in bad.stderr
    assert "Traceback" not in missing.stderr + bad.stderr


def test_ctrl_c_stops_at_a_safe_point_and_says_where_the_fleet_is(tmp_path: Path) -> None:
    config = local_fleet(tmp_path)
    book = playbook(tmp_path, [{"name": "slow", "run": "sleep 1"}])
    proc = subprocess.Popen(
        [*TROUPE, "play", str(book), "-c", str(config), "-e", "version=1.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("batch 2:"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "stopping at the next safe point" in err
    assert "Interrupted" in out
    assert any(line.startswith("  ok: web1") for line in out.splitlines())
    pending = next(line for line in out.splitlines() if line.startswith("  pending:"))
    assert "web3" in pending  # web2 may or may not have started its one step
    assert "Traceback" not in err
