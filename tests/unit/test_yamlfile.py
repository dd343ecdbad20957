"""troupe.yamlfile: YAML -> pydantic model, with errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import yaml
from pydantic import BaseModel, Field, field_validator

from troupe.errors import FieldProblem, FileFormatError, InputError
from troupe.yamlfile import dotted, line_of, load_model, parse_model


class AppEntry(BaseModel):
    name: str
    bot_token: Annotated[str, Field(pattern=r"^xoxb-\S+$")]
    replicas: int = 1

    @field_validator("name")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        if value != value.lower():
            raise ValueError("must be lower case")
        return value


class Config(BaseModel):
    title: str
    apps: list[AppEntry] = []


GOOD = """\
title: fleet
apps:
  - name: one
    bot_token: xoxb-1
  - name: two
    bot_token: xoxb-2
    replicas: 3
"""


def problems_of(text: str, name: str = "cfg.yaml") -> list[FieldProblem]:
    with pytest.raises(FileFormatError) as caught:
        parse_model(text, Config, name)
    assert caught.value.path == name
    return caught.value.problems


# ---- valid input -------------------------------------------------------------------------


def test_valid_text_gives_the_model() -> None:
    config = parse_model(GOOD, Config)

    assert config.title == "fleet"
    assert [(a.name, a.bot_token, a.replicas) for a in config.apps] == [
        ("one", "xoxb-1", 1),
        ("two", "xoxb-2", 3),
    ]


def test_load_model_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD, encoding="utf-8")

    assert load_model(path, Config).apps[1].replicas == 3
    assert load_model(str(path), Config).title == "fleet"


# ---- validation errors name file, line and field ------------------------------------------


def test_wrong_value_names_field_and_its_line() -> None:
    text = GOOD.replace("bot_token: xoxb-2", "bot_token: xoxp-2")

    [problem] = problems_of(text)

    assert problem.field == "apps[1].bot_token"
    assert problem.line == 6
    assert "xoxb" in problem.message


def test_error_message_names_file_line_and_field() -> None:
    text = GOOD.replace("bot_token: xoxb-1", "bot_token: nope")

    with pytest.raises(FileFormatError) as caught:
        parse_model(text, Config, "fleet/troupe.yaml")

    message = str(caught.value)
    assert message.startswith("fleet/troupe.yaml is not valid:")
    assert "fleet/troupe.yaml: line 4: apps[0].bot_token: " in message


def test_missing_field_is_reported_at_the_line_of_its_parent() -> None:
    text = GOOD.replace("    bot_token: xoxb-2\n", "")

    [problem] = problems_of(text)

    assert problem.field == "apps[1].bot_token"
    assert problem.message == "Field required"
    assert problem.line == 5  # the "- name: two" mapping that lacks the key


def test_every_problem_is_reported() -> None:
    text = "apps:\n  - name: one\n    bot_token: bad\n    replicas: many\n"

    problems = problems_of(text)

    assert {(p.field, p.line) for p in problems} == {
        ("title", 1),
        ("apps[0].bot_token", 3),
        ("apps[0].replicas", 4),
    }


def test_own_validator_message_has_no_pydantic_prefix() -> None:
    text = GOOD.replace("name: one", "name: One")

    [problem] = problems_of(text)

    assert problem.field == "apps[0].name"
    assert problem.message == "must be lower case"
    assert problem.line == 3


def test_load_model_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("title: [unclosed\n", encoding="utf-8")

    with pytest.raises(FileFormatError) as caught:
        load_model(path, Config)

    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)


# ---- malformed YAML and wrong top level ----------------------------------------------------


def test_malformed_yaml_reports_a_line() -> None:
    text = "title: fleet\napps:\n  - name: one\n   bot_token: xoxb-1\n"

    [problem] = problems_of(text)

    assert problem.field == ""
    assert problem.message.startswith("not valid YAML (")
    assert problem.line == 4
    assert "line 4: (top level): not valid YAML" in str(problem)


def test_unclosed_flow_mapping_reports_a_line() -> None:
    [problem] = problems_of("title: {a: 1\napps: [\n")

    assert problem.message.startswith("not valid YAML")
    assert problem.line == 2


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n", "", "# nothing\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    [problem] = problems_of(text)

    assert problem == FieldProblem("", "expected a mapping at the top level")


# ---- unreadable files --------------------------------------------------------------------


def test_missing_file_is_a_file_format_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(FileFormatError) as caught:
        load_model(path, Config)

    error = caught.value
    assert isinstance(error, InputError)
    assert error.exit_code == 2
    assert error.path == str(path)
    assert error.problems == [FieldProblem("", "cannot read file (No such file or directory)")]


def test_directory_is_a_file_format_error(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError) as caught:
        load_model(tmp_path, Config)

    [problem] = caught.value.problems
    assert problem.message.startswith("cannot read file (")
    assert problem.line is None


def test_file_that_is_not_utf8_is_a_file_format_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("title: caf\u00e9\n".encode("latin-1"))

    with pytest.raises(FileFormatError) as caught:
        load_model(path, Config)

    assert caught.value.path == str(path)


# ---- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        ((), ""),
        (("title",), "title"),
        (("apps", 0, "bot_token"), "apps[0].bot_token"),
        (("apps", 2), "apps[2]"),
        ((0, "x"), "[0].x"),
        (("a", "b", 1, 2, "c"), "a.b[1][2].c"),
    ],
)
def test_dotted(loc: tuple[int | str, ...], expected: str) -> None:
    assert dotted(loc) == expected


def test_line_of_walks_to_the_deepest_existing_node() -> None:
    root = yaml.compose(GOOD, Loader=yaml.SafeLoader)

    assert line_of(root, ()) == 1
    assert line_of(root, ("apps",)) == 3
    assert line_of(root, ("apps", 1, "replicas")) == 7
    assert line_of(root, ("apps", 1, "missing")) == 5
    assert line_of(root, ("apps", 9, "name")) == 3
    assert line_of(None, ("apps",)) is None


def test_field_problem_str() -> None:
    assert str(FieldProblem("a.b", "bad", 3)) == "line 3: a.b: bad"
    assert str(FieldProblem("", "bad")) == "(top level): bad"
