"""troupe.health.judge (pure) and the health settings: where /healthz draws the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from troupe.config import load_config, with_health_port
from troupe.errors import InputError
from troupe.health import STALL_GRACE, Vitals, judge

NOW = 1_000_000.0


def vitals(connected: bool = True, age: float = 1.0, sweep: float = 15.0) -> Vitals:
    return Vitals("replica-a", "1.2.3", connected, NOW - age, sweep)


def test_connected_and_recently_alive_is_ok() -> None:
    status, body = judge(vitals(age=2.5), NOW)
    assert status == 200
    assert body == {
        "status": "ok",
        "replica": "replica-a",
        "version": "1.2.3",
        "connected": True,
        "alive_age": 2.5,
    }


def test_disconnected_is_unhealthy_with_a_reason() -> None:
    status, body = judge(vitals(connected=False), NOW)
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["connected"] is False
    assert body["reason"] == "not connected to Slack"


@pytest.mark.parametrize(("age", "status"), [(49.9, 200), (50.0, 503), (600.0, 503)])
def test_a_stalled_loop_is_unhealthy_past_three_sweeps_and_a_grace(age: float, status: int) -> None:
    assert 3 * 15.0 + STALL_GRACE == 50.0
    code, body = judge(vitals(age=age), NOW)
    assert code == status
    if status == 503:
        assert "sweeper loop has not run for" in body["reason"]
        assert body["connected"] is True


def test_both_reasons_are_given() -> None:
    _, body = judge(vitals(connected=False, age=100.0), NOW)
    assert body["reason"].count(";") == 1


def test_a_clock_behind_the_loop_is_not_negative_age() -> None:
    _, body = judge(vitals(age=-3.0), NOW)
    assert body["alive_age"] == 0.0


def test_health_port_from_file_env_and_flag(tmp_path: Path) -> None:
    path = tmp_path / "troupe.yaml"
    path.write_text("health: {port: 8390}\n")
    assert load_config(path, env={}).health.port == 8390
    assert load_config(path, env={}).health.host == "127.0.0.1"
    from_env = load_config(path, env={"TROUPE_HEALTH_PORT": "9000"})
    assert from_env.health.port == 9000
    assert with_health_port(from_env, 0).health.port == 0


def test_default_health_port_is_a_free_one(tmp_path: Path) -> None:
    path = tmp_path / "troupe.yaml"
    path.write_text("{}\n")
    assert load_config(path, env={}).health.port == 0


@pytest.mark.parametrize("bad", ["http", "-1", "70000", "8390.5"])
def test_a_bad_health_port_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "troupe.yaml"
    path.write_text("{}\n")
    with pytest.raises(InputError, match="health port must be a number from 0 to 65535"):
        load_config(path, env={"TROUPE_HEALTH_PORT": bad})
