"""Small value types shared by config and playbooks: durations and host counts (pure)."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """`30s`, `2m`, `1h`, `500ms` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 2m or 500ms")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"expected a duration such as 30s, 2m or 500ms, not {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m"


# What editors see in the JSON Schema: the text forms are allowed, not only numbers.
_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$"},
    ],
    "description": "seconds, or a duration such as 500ms, 30s, 2m, 1h",
}
_COUNT_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"},
    ],
    "description": 'a number of hosts, or a percentage such as "25%"',
}
_PERCENT_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": 100},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"},
    ],
    "description": "a percentage such as 25%",
}

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(_DURATION_SCHEMA),
]

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_count(value: object) -> int | str:
    """A host count: a positive whole number, or a percentage such as "25%"."""
    if isinstance(value, bool):
        raise ValueError('expected a number of hosts or a percentage such as "25%"')
    if isinstance(value, int):
        if value < 1:
            raise ValueError("a host count must be at least 1")
        return value
    match = _PERCENT.match(str(value))
    if match is None or not 0 < float(match.group(1)) <= 100:
        raise ValueError(f'expected a number of hosts or a percentage such as "25%", not {value!r}')
    return f"{float(match.group(1)):g}%"


def resolve_count(count: int | str, total: int) -> int:
    """How many of `total` hosts a count means; a percentage rounds up, to at least 1."""
    if isinstance(count, int):
        return min(count, total)
    share = float(count.rstrip("%")) / 100
    return min(total, max(1, math.ceil(total * share - 1e-9)))


HostCount = Annotated[int | str, BeforeValidator(parse_count), WithJsonSchema(_COUNT_SCHEMA)]

_FRACTION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_percent(value: object) -> float:
    """A share between 0 and 100: `25`, `25%` or `"25%"` -> 25.0."""
    if isinstance(value, bool):
        raise ValueError("expected a percentage such as 25%")
    if isinstance(value, int | float):
        number = float(value)
    else:
        match = _FRACTION.match(str(value))
        if match is None:
            raise ValueError(f"expected a percentage such as 25%, not {value!r}")
        number = float(match.group(1))
    if not 0 <= number <= 100:
        raise ValueError("a percentage must be between 0 and 100")
    return number


Percent = Annotated[float, BeforeValidator(parse_percent), WithJsonSchema(_PERCENT_SCHEMA)]
