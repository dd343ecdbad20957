"""troupe.playbooks: the playbook model, variables and `-e key=value` assignments."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from troupe.errors import FileFormatError, InputError
from troupe.executor import Executor
from troupe.inventory import Inventory
from troupe.planner import make_plan
from troupe.playbooks import (
    ApproveStep,
    CheckStep,
    HostsStep,
    PauseStep,
    Playbook,
    Rolling,
    Task,
    load_playbook,
    parse_assignments,
)
from troupe.progress import RunOutcome, RunResult
from troupe.remote import Rule, scripted

VALID = Path(__file__).resolve().parents[1] / "fixtures" / "valid"


def playbook(**fields: Any) -> Playbook:
    data: dict[str, Any] = {"name": "deploy", "tasks": [{"run": "true"}]}
    return Playbook.model_validate(data | fields)


def refused(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        playbook(**fields)
    return str(caught.value)


# ---- the model -------------------------------------------------------------------------------


def test_defaults_of_a_minimal_playbook() -> None:
    book = playbook()

    assert (book.description, book.hosts, book.vars, book.capture) == ("", "all", {}, {})
    assert (book.checks, book.verify, book.rollback) == ({}, [], [])
    assert book.strategy.canary is None
    assert book.strategy.rolling == Rolling(serial="100%")
    rolling = book.strategy.rolling
    assert rolling is not None
    assert (rolling.max_unavailable, rolling.max_fail_percentage, rolling.failure_budget) == (
        None,
        0.0,
        None,
    )


def test_task_defaults() -> None:
    task = Task(run="make install")

    assert (task.name, task.put, task.sudo, task.when) == ("", None, False, None)
    assert (task.timeout, task.retries, task.retry_delay) == (300.0, 0, 1.0)


def test_task_title() -> None:
    assert Task(name="restart", run="systemctl restart app").title == "restart"
    assert Task(run="systemctl restart app\necho done").title == "systemctl restart app"
    assert Task(run="x" * 100).title == "x" * 60
    assert Task.model_validate({"put": {"src": "a", "dest": "/srv/a"}}).title == "put /srv/a"


def test_check_defaults() -> None:
    book = playbook(checks={"up": {"http": "http://h/health"}, "run": {"command": "true"}})

    up, run = book.checks["up"], book.checks["run"]
    assert (up.body, up.retries, up.interval, up.timeout) == (None, 3, 1.0, 5.0)
    assert (up.expected, run.expected) == (200, 0)  # HTTP 200; exit code 0


def test_check_expect_overrides_the_default() -> None:
    book = playbook(checks={"gone": {"http": "http://h/old", "expect": 404}})

    assert book.checks["gone"].expected == 404


def test_the_valid_fixtures_load() -> None:
    rolling = load_playbook(VALID / "rolling.yaml")
    canary = load_playbook(VALID / "canary.yaml")

    assert rolling.strategy.rolling is not None
    assert rolling.strategy.rolling.serial == [1, "25%", "100%"]
    assert rolling.tasks[1].timeout == 120.0
    assert rolling.tasks[3].retry_delay == 5.0
    assert rolling.tasks[0].put is not None
    assert rolling.tasks[0].put.mode == "0644"
    assert rolling.verify == ["running", "http_ok"]
    assert canary.strategy.canary is not None
    steps = canary.strategy.canary.steps
    assert [type(s) for s in steps] == [
        HostsStep,
        CheckStep,
        PauseStep,
        ApproveStep,
        HostsStep,
        CheckStep,
        PauseStep,
        HostsStep,
    ]
    assert steps[2] == PauseStep(pause=30.0)
    assert steps[5] == CheckStep(check="http_ok", success=90.0, failure=10.0)
    assert steps[6] == PauseStep(pause="until approved")
    assert steps[3] == ApproveStep.model_validate({"approve": {"roles": ["deployers"]}})


def test_playbooks_are_frozen() -> None:
    book = playbook()

    with pytest.raises(ValidationError):
        book.name = "other"  # type: ignore[misc]


def test_load_playbook_errors_are_file_format_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: deploy\ntasks: []\n", encoding="utf-8")

    with pytest.raises(FileFormatError) as caught:
        load_playbook(path)

    [problem] = caught.value.problems
    assert (problem.field, problem.line) == ("tasks", 2)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Deploy"}, "should match pattern"),
        ({"name": "web deploy"}, "should match pattern"),
        ({"name": "-deploy"}, "should match pattern"),
        ({"name": "d" * 64}, "should match pattern"),
        ({"tasks": []}, "at least 1 item"),
        ({"tasks": [{"name": "nothing"}]}, "exactly one of `run` or `put`"),
        ({"tasks": [{"run": "a", "put": {"src": "a", "dest": "b"}}]}, "exactly one of"),
        ({"tasks": [{"run": "a", "retries": -1}]}, "greater than or equal to 0"),
        ({"tasks": [{"run": "a", "retries": 101}]}, "less than or equal to 100"),
        ({"tasks": [{"run": "a", "timeout": "soon"}]}, "duration"),
        ({"tasks": [{"put": {"src": "a", "dest": "b", "mode": "999"}}]}, "should match pattern"),
        ({"tasks": [{"put": {"src": "a", "dest": "b", "mode": 644}}]}, "valid string"),
        ({"tasks": [{"put": {"src": "a"}}]}, "Field required"),
        ({"become": True}, "Extra inputs"),
        ({"vars": {"app-version": {}}}, "should match pattern"),
        ({"capture": {"1st": "cat /srv/version"}}, "should match pattern"),
        ({"checks": {"c": {}}}, "exactly one of `http` or `command`"),
        ({"checks": {"c": {"http": "u", "command": "c"}}}, "exactly one of `http` or `command`"),
        ({"checks": {"c": {"command": "c", "body": "ok"}}}, "applies to http checks only"),
        ({"verify": ["up"]}, "unknown check 'up'; declared: []"),
        ({"strategy": {}}, "exactly one of `rolling` or `canary`"),
        ({"strategy": {"rolling": {}, "canary": {"steps": [{"hosts": 1}]}}}, "exactly one of"),
        ({"strategy": {"rolling": {"serial": 0}}}, "at least 1"),
        ({"strategy": {"rolling": {"serial": "150%"}}}, "'150%'"),
        ({"strategy": {"rolling": {"serial": [1, -1]}}}, "at least 1"),
        ({"strategy": {"rolling": {"max_fail_percentage": 101}}}, "between 0 and 100"),
        ({"strategy": {"rolling": {"failure_budget": -1}}}, "greater than or equal to 0"),
        ({"strategy": {"canary": {"steps": [{"pause": "5m"}]}}}, "at least one `hosts` step"),
        ({"strategy": {"canary": {"steps": []}}}, "at least one `hosts` step"),
    ],
)
def test_malformed_playbooks_are_refused(fields: dict[str, Any], message: str) -> None:
    assert message in refused(**fields)


def test_canary_check_steps_must_name_declared_checks() -> None:
    steps = [{"hosts": 1}, {"check": "smoke"}]

    message = refused(strategy={"canary": {"steps": steps}}, checks={"up": {"command": "true"}})

    assert "unknown check 'smoke'; declared: ['up']" in message


def test_empty_rolling_section_is_not_the_default_rolling() -> None:
    # `rolling:` with nothing under it is null in YAML: the strategy then has no kind.
    assert "exactly one of `rolling` or `canary`" in refused(strategy={"rolling": None})
    assert playbook(strategy={"rolling": {}}).strategy.rolling == Rolling()


# ---- variables: declarations -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"required": True, "default": "1.0.0"}, "a required variable cannot have a default"),
        ({"pattern": r"^\d+\.\d+\.\d+$", "default": "2.4"}, "must match"),
        ({"pattern": "^[0-9.+$"}, "not a valid regular expression"),
        ({"choices": ["staging", "production"], "default": "prod"}, "must be one of"),
        ({"requird": True}, "Extra inputs"),
    ],
)
def test_incoherent_variables_are_refused(spec: dict[str, Any], message: str) -> None:
    assert message in refused(vars={"v": spec})


def test_a_default_that_fits_is_accepted() -> None:
    book = playbook(
        vars={
            "version": {"pattern": r"^\d+\.\d+\.\d+$", "default": "2.4.1"},
            "env": {"choices": ["staging", "production"], "default": "staging"},
        }
    )

    assert book.vars["version"].default == "2.4.1"


# ---- resolve_vars -------------------------------------------------------------------------

DECLARED = {
    "version": {"required": True, "pattern": r"^\d+\.\d+\.\d+$"},
    "env": {"default": "staging", "choices": ["staging", "production"]},
    "port": {"default": 8080},
    "note": {},
}


@pytest.fixture
def book() -> Playbook:
    return playbook(vars=DECLARED)


def test_defaults_fill_in(book: Playbook) -> None:
    assert book.resolve_vars({"version": "2.4.1"}, {}) == {
        "version": "2.4.1",
        "env": "staging",
        "port": 8080,
    }


def test_inventory_vars_override_defaults(book: Playbook) -> None:
    values = book.resolve_vars({"version": "2.4.1"}, {"env": "production", "port": 9090})

    assert (values["env"], values["port"]) == ("production", 9090)


def test_given_values_override_inventory_vars(book: Playbook) -> None:
    values = book.resolve_vars(
        {"version": "2.4.1", "env": "staging"}, {"env": "production", "version": "1.0.0"}
    )

    assert (values["version"], values["env"]) == ("2.4.1", "staging")


def test_inventory_vars_that_are_not_declared_are_ignored(book: Playbook) -> None:
    values = book.resolve_vars({"version": "2.4.1"}, {"datacenter": "eu-1", "note": "hi"})

    assert "datacenter" not in values
    assert values["note"] == "hi"


def test_inventory_can_supply_a_required_variable(book: Playbook) -> None:
    assert book.resolve_vars({}, {"version": "3.0.0"})["version"] == "3.0.0"


def test_unknown_given_variable_is_an_input_error(book: Playbook) -> None:
    with pytest.raises(InputError) as caught:
        book.resolve_vars({"version": "2.4.1", "verison": "2.4.2"}, {})

    assert str(caught.value) == (
        "deploy: unknown variables ['verison']; declared: ['env', 'note', 'port', 'version']"
    )


def test_missing_required_variable_is_an_input_error(book: Playbook) -> None:
    with pytest.raises(InputError, match=r"^deploy: variable 'version' is required$"):
        book.resolve_vars({}, {})


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"version": "2.4"}, "variable 'version' must match"),
        ({"version": "1.0; touch pwned"}, "variable 'version' must match"),
        ({"version": "v2.4.1"}, "variable 'version' must match"),
        ({"version": "2.4.1", "env": "prod"}, "variable 'env' must be one of"),
    ],
)
def test_given_values_are_checked(book: Playbook, given: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        book.resolve_vars(given, {})


def test_inventory_values_are_checked_too(book: Playbook) -> None:
    with pytest.raises(InputError, match="variable 'env' must be one of"):
        book.resolve_vars({"version": "2.4.1"}, {"env": "qa"})


def test_pattern_is_searched_so_anchors_matter() -> None:
    book = playbook(vars={"loose": {"pattern": r"\d+"}, "tight": {"pattern": r"^\d+$"}})

    assert book.resolve_vars({"loose": "v12-rc"}, {}) == {"loose": "v12-rc"}
    with pytest.raises(InputError):
        book.resolve_vars({"tight": "v12-rc"}, {})


def test_a_variable_without_value_or_default_is_left_out() -> None:
    assert playbook(vars={"note": {}}).resolve_vars({}, {}) == {}


def test_a_false_default_is_a_value() -> None:
    assert playbook(vars={"dry": {"default": False}}).resolve_vars({}, {}) == {"dry": False}


def test_numeric_choices_can_be_given_on_the_command_line() -> None:
    book = playbook(vars={"replicas": {"choices": [1, 2, 3]}})

    given = parse_assignments(["replicas=2"])

    assert book.resolve_vars(given, {})["replicas"] in (2, "2")


# ---- parse_assignments ------------------------------------------------------------------


def test_parse_assignments() -> None:
    assert parse_assignments(["version=2.4.1", "env=production"]) == {
        "version": "2.4.1",
        "env": "production",
    }
    assert parse_assignments(()) == {}


@pytest.mark.parametrize(
    ("pair", "key", "value"),
    [
        ("note=a=b", "note", "a=b"),  # only the first = splits
        ("note=", "note", ""),
        ("version=1.0; touch pwned", "version", "1.0; touch pwned"),
        ("n=2", "n", "2"),  # values stay strings
        ("flag=true", "flag", "true"),
        ("_x=1", "_x", "1"),
    ],
)
def test_values_stay_strings(pair: str, key: str, value: str) -> None:
    assert parse_assignments([pair]) == {key: value}


def test_a_later_assignment_wins() -> None:
    assert parse_assignments(["env=staging", "env=production"]) == {"env": "production"}


@pytest.mark.parametrize(
    "pair", ["version", "=2.4.1", "app-version=1", "1x=2", " env=prod", "a b=c"]
)
def test_malformed_assignments_are_input_errors(pair: str) -> None:
    with pytest.raises(InputError, match="expected key=value") as caught:
        parse_assignments([pair])

    assert caught.value.exit_code == 2


# ---- what the fields mean in a run (over the scripted fake remote) -------------------------


def run_book(
    book: Playbook, rules: list[Rule], given: dict[str, str]
) -> tuple[RunResult, list[str]]:
    inventory = Inventory.model_validate({"hosts": {"web1": {"address": "192.0.2.1"}}})
    fleet = inventory.select("all")
    log: list[tuple[str, str]] = []
    executor = Executor(book, make_plan(book, fleet), fleet, given, scripted(rules, log))
    result = executor.run()
    return result, [command for _, command in log if command != "close"]


def test_previous_is_seen_by_tasks_and_rollback() -> None:
    book = playbook(
        capture={"was": "cat /srv/version"},
        tasks=[{"run": "echo from {{ previous.was }}"}, {"run": "false"}],
        rollback=[{"run": "restore {{ previous.was }}"}],
    )

    result, log = run_book(book, [Rule("cat", stdout="1.0\n"), Rule("^false$", 1)], {})

    assert result.outcome == RunOutcome.FAILED
    assert log == ["cat /srv/version", "echo from 1.0", "false", "restore 1.0"]


def test_when_applies_to_rollback_tasks() -> None:
    book = playbook(
        vars={"env": {"default": "staging"}},
        tasks=[{"run": "false"}],
        rollback=[{"run": "page-oncall", "when": "env == 'production'"}, {"run": "restore"}],
    )

    _, log = run_book(book, [Rule("^false$", 1)], {})

    assert log == ["false", "restore"]


class FakeResponse:
    status = 200

    def __init__(self, body: str) -> None:
        self.body = body.encode()

    def read(self, size: int) -> bytes:
        return self.body[:size]

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def http_book(body: str) -> Playbook:
    check = {"http": "http://{{ host.address }}/health", "body": body, "retries": 0}
    return playbook(vars={"version": {"required": True}}, checks={"up": check}, verify=["up"])


def test_check_body_is_searched_in_the_response(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: FakeResponse("ok 2.4.1"))

    passed, _ = run_book(http_book("ok 2.4"), [], {"version": "2.4.1"})
    failed, _ = run_book(http_book("ok 2.5"), [], {"version": "2.4.1"})

    assert passed.outcome == RunOutcome.SUCCEEDED
    assert failed.outcome == RunOutcome.FAILED
    assert failed.hosts["web1"].error == "HTTP 200, body lacks 'ok 2.5'"


def test_check_body_is_templated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: FakeResponse("ok 2.4.1"))

    result, _ = run_book(http_book("ok {{ version }}"), [], {"version": "2.4.1"})

    assert result.outcome == RunOutcome.SUCCEEDED, result.hosts["web1"].error
