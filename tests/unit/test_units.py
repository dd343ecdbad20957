"""troupe.units: durations, host counts, percentages and how counts resolve."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from troupe.units import (
    Duration,
    HostCount,
    Percent,
    format_duration,
    parse_count,
    parse_duration,
    parse_percent,
    resolve_count,
)

# ---- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1.5m", 90.0),
        (" 10 s ", 10.0),
        ("45", 45.0),  # a bare number in a string is seconds
        (45, 45.0),
        (2.5, 2.5),
        (0, 0.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["soon", "1h30m", "30 sec", "-5s", "5d", "", "s", "1,5s", [30], None]
)
def test_parse_duration_rejects_what_is_not_a_duration(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [-1, -0.5])
def test_parse_duration_rejects_negative_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False])
def test_parse_duration_rejects_booleans(value: bool) -> None:
    # YAML's `yes` / `no` are booleans; True is also an int in Python.
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "500ms"), (0.0, "0ms"), (1.0, "1s"), (30.0, "30s"), (90.0, "90s"), (120.0, "2m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


class Timed(BaseModel):
    timeout: Duration = 300.0


def test_duration_field_parses_and_serializes() -> None:
    timed = Timed.model_validate({"timeout": "2m"})

    assert timed.timeout == 120.0
    assert timed.model_dump(mode="json") == {"timeout": "2m"}  # as a person writes it
    assert timed.model_dump() == {"timeout": 120.0}  # in Python, the number code uses
    assert Timed().timeout == 300.0


def test_duration_field_error_names_the_value() -> None:
    with pytest.raises(ValidationError) as caught:
        Timed.model_validate({"timeout": "soon"})

    [error] = caught.value.errors()
    assert error["loc"] == ("timeout",)
    assert "'soon'" in error["msg"]


# ---- host counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "count"),
    [(1, 1), (7, 7), ("25%", "25%"), ("100%", "100%"), (" 50 % ", "50%"), ("12.5%", "12.5%")],
)
def test_parse_count(value: object, count: int | str) -> None:
    assert parse_count(value) == count


def test_parse_count_normalises_percentages() -> None:
    assert parse_count("50.0%") == "50%"
    assert parse_count("050%") == "50%"


@pytest.mark.parametrize("value", [0, -1, -100])
def test_parse_count_needs_at_least_one_host(value: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        parse_count(value)


@pytest.mark.parametrize(
    "value", ["0%", "150%", "100.1%", "-5%", "25", "all", "", "25 percent", 2.5, True, False]
)
def test_parse_count_rejects_what_is_not_a_count(value: object) -> None:
    with pytest.raises(ValueError, match="number of hosts or a percentage"):
        parse_count(value)


class Counted(BaseModel):
    serial: HostCount | list[HostCount] = "100%"


def test_host_count_field_accepts_a_number_a_percentage_or_a_list() -> None:
    assert Counted.model_validate({"serial": 2}).serial == 2
    assert Counted.model_validate({"serial": "30%"}).serial == "30%"
    assert Counted.model_validate({"serial": [1, "25%", 5]}).serial == [1, "25%", 5]


# ---- resolve_count ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "total", "hosts"),
    [
        (1, 10, 1),
        (3, 10, 3),
        (20, 10, 10),  # never more than there are
        ("10%", 10, 1),
        ("25%", 10, 3),  # 2.5 rounds up
        ("30%", 10, 3),  # exactly 3: no rounding up past it (float noise is ignored)
        ("33%", 3, 1),  # 0.99 rounds up to 1
        ("1%", 10, 1),  # at least one host
        ("50%", 5, 3),
        ("50%", 4, 2),
        ("100%", 7, 7),
        ("12.5%", 8, 1),
        ("70%", 10, 7),
        ("10%", 1, 1),
    ],
)
def test_resolve_count(count: int | str, total: int, hosts: int) -> None:
    assert resolve_count(count, total) == hosts


@pytest.mark.parametrize("total", range(1, 60))
def test_resolve_count_of_a_percentage_is_the_ceiling(total: int) -> None:
    for percent in (1, 10, 20, 25, 30, 33, 50, 60, 70, 99, 100):
        exact = total * percent  # hundredths of a host, in whole numbers: no float noise
        expected = max(1, -(-exact // 100))
        assert resolve_count(f"{percent}%", total) == expected, (percent, total)


# ---- percentages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "number"),
    [(25, 25.0), (0, 0.0), (100, 100.0), (12.5, 12.5), ("25%", 25.0), (" 5 % ", 5.0)],
)
def test_parse_percent(value: object, number: float) -> None:
    assert parse_percent(value) == number


@pytest.mark.parametrize("value", [101, -1, 100.5, "150%"])
def test_parse_percent_must_be_between_0_and_100(value: object) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        parse_percent(value)


@pytest.mark.parametrize("value", ["many", "25", "", "-5%", True])
def test_parse_percent_rejects_what_is_not_a_percentage(value: object) -> None:
    with pytest.raises(ValueError, match="expected a percentage"):
        parse_percent(value)


class Shared(BaseModel):
    share: Percent = 0.0


def test_percent_field() -> None:
    assert Shared.model_validate({"share": "10%"}).share == 10.0
    assert Shared.model_validate({"share": 10}).share == 10.0
    with pytest.raises(ValidationError):
        Shared.model_validate({"share": "110%"})
