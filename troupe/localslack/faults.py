"""Fault injection: what can go wrong on purpose, and when (pure; randomness is passed in).

Set at start (`troupe localslack --error ... --latency ... --non-atomic-pins ...`) or while
running (`PUT /admin/faults`). Tests use it to prove the bot survives Slack misbehaving.
"""

from __future__ import annotations

import random
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from troupe.errors import InputError


class ErrorFault(BaseModel):
    """Answer calls of `method` ("*" for all) with `error`, with the given probability."""

    model_config = ConfigDict(extra="forbid")

    method: str = "*"
    error: str = "internal_error"
    status: Annotated[int, Field(ge=200, le=599)] = 200
    probability: Annotated[float, Field(ge=0, le=1)] = 1.0
    count: Annotated[int, Field(ge=1)] | None = None  # stop after this many injections
    # The call takes effect, then its answer is this error: an answer lost on the way back
    # (the client retries a call that already happened, e.g. pins.add -> already_pinned).
    after: bool = False

    def matches(self, method: str) -> bool:
        return self.method in ("*", method)


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    errors: list[ErrorFault] = []
    latency_ms: Annotated[float, Field(ge=0)] = 0
    # A window in which concurrent pins.add calls on one message may all succeed:
    # each call checks, waits this long, then pins — as a non-atomic server could.
    non_atomic_pins_ms: Annotated[float, Field(ge=0)] = 0

    def pick_error(self, method: str, rng: random.Random) -> ErrorFault | None:
        """The fault to inject for this call, if any (uses up one of a counted fault)."""
        for fault in self.errors:
            if fault.matches(method) and rng.random() < fault.probability:
                if fault.count is not None:
                    self._use(fault)
                return fault
        return None

    def _use(self, fault: ErrorFault) -> None:
        if fault.count == 1:
            self.errors.remove(fault)
        else:
            fault.count = (fault.count or 1) - 1


def parse_error_spec(spec: str) -> ErrorFault:
    """`METHOD=CODE[/STATUS][@PROBABILITY]`, e.g. `pins.add=internal_error@0.3`,
    `*=service_unavailable/503@0.05`."""
    method, eq, rest = (part.strip() for part in spec.partition("="))
    rest, _, prob = rest.partition("@")
    code, _, status = rest.partition("/")
    if not eq or not method or not code:
        raise InputError(f"--error {spec!r}: expected METHOD=CODE[/STATUS][@PROBABILITY]")
    try:
        return ErrorFault(
            method=method,
            error=code,
            status=int(status) if status else 200,
            probability=float(prob) if prob else 1.0,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InputError(f"--error {spec!r}: {field}: {first['msg']}") from exc
    except ValueError as exc:
        raise InputError(f"--error {spec!r}: {exc}") from exc
