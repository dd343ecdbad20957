"""troupe.commands: chat text -> Command (pure)."""

from __future__ import annotations

import pytest

from troupe.commands import BadArguments, Command, UnknownCommand, addressed_to, parse, unmark
from troupe.errors import InputError


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("deploy canary version=2.4.1", Command("deploy", "canary", None, {"version": "2.4.1"})),
        ("Deploy web to db1,db2", Command("deploy", "web", "db1,db2", {})),
        (
            'deploy web note="two words" v=1',
            Command("deploy", "web", None, {"note": "two words", "v": "1"}),
        ),
        (
            "deploy web note=\u201csmart quotes\u201d",
            Command("deploy", "web", None, {"note": "smart quotes"}),
        ),
        (
            "deploy web url=<https://x.example/a?b=1|x.example>",
            Command("deploy", "web", None, {"url": "https://x.example/a?b=1"}),
        ),
        ("deploy web to <#C0OPS00001|ops>", Command("deploy", "web", "#ops", {})),
        (
            "deploy web version='1.0; touch pwned'",
            Command("deploy", "web", None, {"version": "1.0; touch pwned"}),
        ),
        ("roll call", Command("roll call")),
        ("ROLL CALL", Command("roll call")),
        ("status", Command("status")),
        ("help", Command("help")),
        ("help deploy", Command("help", topic="deploy")),
        ("", Command("help")),
    ],
)
def test_parse(text: str, command: Command) -> None:
    assert parse(text) == command


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [("dpeloy web", "deploy"), ("roll cal", "roll call"), ("stauts", "status"), ("launch", None)],
)
def test_unknown_commands_get_a_suggestion(text: str, suggestion: str | None) -> None:
    with pytest.raises(UnknownCommand) as info:
        parse(text)
    assert info.value.suggestion == suggestion
    if suggestion:
        assert f"Did you mean `{suggestion}`?" in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("deploy", "name the playbook"),
        ("deploy version=1", "name the playbook"),
        ("deploy web version", "`version` is not key=value"),
        ("deploy web 1x=2", "`1x=2` is not key=value"),
        ("status now", "`status` takes no arguments"),
    ],
)
def test_bad_arguments_get_the_usage_line(text: str, problem: str) -> None:
    with pytest.raises(BadArguments) as info:
        parse(text)
    assert problem in str(info.value) and "Usage: `" in str(info.value)


def test_unbalanced_quotes_are_an_input_error() -> None:
    with pytest.raises(InputError, match="unbalanced quotes"):
        parse('deploy web note="oops')


def test_addressed_to_a_mention_or_a_prefix() -> None:
    assert addressed_to("<@U0TROUPEA> deploy web", "U0TROUPEA") == "deploy web"
    assert addressed_to("<@U0TROUPEA|troupe>: status", "U0TROUPEA") == "status"
    assert addressed_to("<@U0OTHER> deploy web", "U0TROUPEA") is None
    assert addressed_to("!troupe roll call", "U0TROUPEA", prefix="!troupe") == "roll call"
    assert addressed_to("deploy web", "U0TROUPEA") is None


def test_unmark() -> None:
    assert unmark("<@U123|bob> &lt;b&gt; &amp; <mailto:a@b.c|a@b.c>") == "@U123 <b> & mailto:a@b.c"
