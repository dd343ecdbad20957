"""troupe.localslack.faults: the --error spec and when an injected fault fires."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from troupe.errors import InputError
from troupe.localslack.faults import ErrorFault, Faults, parse_error_spec


class FixedRandom(random.Random):
    """random() always answers `value`: makes probability checks exact."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


# ---- parse_error_spec --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pins.add=already_pinned", ("pins.add", "already_pinned", 200, 1.0)),
        ("pins.add=internal_error@0.3", ("pins.add", "internal_error", 200, 0.3)),
        ("*=service_unavailable/503@0.05", ("*", "service_unavailable", 503, 0.05)),
        ("chat.postMessage=ratelimited/429", ("chat.postMessage", "ratelimited", 429, 1.0)),
        ("pins.add=internal_error@0", ("pins.add", "internal_error", 200, 0.0)),
        ("pins.add=internal_error@1", ("pins.add", "internal_error", 200, 1.0)),
    ],
)
def test_parse_error_spec(spec: str, expected: tuple[str, str, int, float]) -> None:
    fault = parse_error_spec(spec)

    assert (fault.method, fault.error, fault.status, fault.probability) == expected
    assert fault.count is None


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "pins.add",  # no '='
        "=internal_error",  # no method
        "pins.add=",  # no code
        "pins.add=/503",  # no code, only a status
        "pins.add=@0.5",
        "pins.add=internal_error/abc",  # status not a number
        "pins.add=internal_error/99",  # status below 200
        "pins.add=internal_error/600",  # status above 599
        "pins.add=internal_error@abc",  # probability not a number
        "pins.add=internal_error@1.5",  # probability above 1
        "pins.add=internal_error@-0.1",
    ],
)
def test_parse_error_spec_refuses(spec: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_error_spec(spec)

    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(f"--error {spec!r}: ")


def test_parse_error_spec_error_is_one_clear_line() -> None:
    with pytest.raises(InputError) as caught:
        parse_error_spec("pins.add=internal_error@1.5")

    message = str(caught.value)
    assert "\n" not in message
    assert "errors.pydantic.dev" not in message
    assert "probability" in message


# ---- matching and probability --------------------------------------------------------------


def test_star_matches_every_method() -> None:
    fault = ErrorFault(method="*")

    assert all(fault.matches(m) for m in ("pins.add", "chat.postMessage", "auth.test"))


def test_named_method_matches_only_itself() -> None:
    fault = ErrorFault(method="pins.add")

    assert fault.matches("pins.add")
    assert not fault.matches("pins.remove")
    assert not fault.matches("*")


def test_pick_error_for_a_method() -> None:
    faults = Faults(errors=[ErrorFault(method="pins.add", error="already_pinned")])
    rng = random.Random(1)

    picked = faults.pick_error("pins.add", rng)

    assert picked is not None
    assert (picked.error, picked.status) == ("already_pinned", 200)
    assert faults.pick_error("reactions.add", rng) is None


def test_star_fault_hits_every_method() -> None:
    faults = Faults(errors=[parse_error_spec("*=service_unavailable/503")])
    rng = random.Random(1)

    for method in ("auth.test", "pins.add", "conversations.history"):
        picked = faults.pick_error(method, rng)
        assert picked is not None
        assert (picked.error, picked.status) == ("service_unavailable", 503)


def test_probability_zero_never_fires() -> None:
    faults = Faults(errors=[ErrorFault(probability=0)])
    rng = random.Random(7)

    assert [faults.pick_error("pins.add", rng) for _ in range(1000)] == [None] * 1000
    assert faults.pick_error("pins.add", FixedRandom(0.0)) is None


def test_probability_one_always_fires() -> None:
    faults = Faults(errors=[ErrorFault(probability=1)])
    rng = random.Random(7)

    assert all(faults.pick_error("pins.add", rng) is not None for _ in range(1000))
    assert faults.pick_error("pins.add", FixedRandom(0.9999999)) is not None


def test_probability_is_compared_with_the_random_draw() -> None:
    faults = Faults(errors=[ErrorFault(probability=0.3)])

    assert faults.pick_error("pins.add", FixedRandom(0.29)) is not None
    assert faults.pick_error("pins.add", FixedRandom(0.3)) is None


def test_seeded_rng_makes_injection_reproducible() -> None:
    faults = Faults(errors=[ErrorFault(probability=0.5)])

    def run() -> list[bool]:
        rng = random.Random(42)
        return [faults.pick_error("pins.add", rng) is not None for _ in range(200)]

    first = run()
    assert first == run()
    assert 60 < sum(first) < 140


def test_first_matching_fault_wins() -> None:
    faults = Faults(
        errors=[
            ErrorFault(method="pins.add", error="already_pinned"),
            ErrorFault(method="*", error="internal_error"),
        ]
    )
    rng = random.Random(1)

    assert [faults.pick_error(m, rng) for m in ("pins.add", "pins.remove")] == [
        faults.errors[0],
        faults.errors[1],
    ]


def test_a_missed_roll_falls_through_to_the_next_fault() -> None:
    faults = Faults(
        errors=[
            ErrorFault(method="pins.add", error="already_pinned", probability=0.5),
            ErrorFault(method="*", error="internal_error"),
        ]
    )

    picked = faults.pick_error("pins.add", FixedRandom(0.7))

    assert picked is not None
    assert picked.error == "internal_error"


# ---- count -----------------------------------------------------------------------------------


def test_count_is_used_up() -> None:
    faults = Faults(errors=[ErrorFault(method="pins.add", error="internal_error", count=2)])
    rng = random.Random(1)

    picks = [faults.pick_error("pins.add", rng) for _ in range(4)]

    assert [p.error if p else None for p in picks] == [
        "internal_error",
        "internal_error",
        None,
        None,
    ]
    assert faults.errors == []


def test_count_is_not_spent_by_other_methods_or_missed_rolls() -> None:
    faults = Faults(errors=[ErrorFault(method="pins.add", probability=0.5, count=1)])

    assert faults.pick_error("pins.remove", FixedRandom(0.0)) is None
    assert faults.pick_error("pins.add", FixedRandom(0.9)) is None
    assert faults.errors[0].count == 1
    assert faults.pick_error("pins.add", FixedRandom(0.1)) is not None
    assert faults.errors == []


def test_used_up_fault_leaves_the_others() -> None:
    keep = ErrorFault(method="*", error="internal_error", probability=0)
    faults = Faults(errors=[ErrorFault(method="pins.add", count=1), keep])

    faults.pick_error("pins.add", random.Random(1))

    assert faults.errors == [keep]


# ---- validation ------------------------------------------------------------------------------


def test_faults_model_refuses_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValidationError):
        Faults.model_validate({"errors": [], "latency": 5})
    with pytest.raises(ValidationError):
        Faults.model_validate({"latency_ms": -1})
    with pytest.raises(ValidationError):
        Faults.model_validate({"errors": [{"method": "pins.add", "count": 0}]})
    with pytest.raises(ValidationError):
        Faults.model_validate({"errors": [{"method": "pins.add", "colour": "red"}]})


def test_faults_defaults() -> None:
    faults = Faults()

    assert (faults.errors, faults.latency_ms, faults.non_atomic_pins_ms) == ([], 0, 0)
    assert faults.pick_error("pins.add", random.Random(1)) is None


def test_an_after_fault_is_picked_like_any_other_and_used_up() -> None:
    faults = Faults.model_validate(
        {"errors": [{"method": "pins.add", "status": 503, "count": 1, "after": True}]}
    )
    fault = faults.pick_error("pins.add", FixedRandom(0.0))
    assert fault is not None and fault.after and fault.status == 503
    assert faults.pick_error("pins.add", FixedRandom(0.0)) is None  # count 1: gone
    assert not ErrorFault().after  # by default a fault replaces the call entirely
