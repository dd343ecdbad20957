"""troupe.commands: chat text -> Command (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from troupe.commands import (
    USAGE,
    BadArguments,
    Command,
    ParseError,
    UnknownCommand,
    addressed_to,
    describe,
    parse,
    unmark,
)


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
        ("help roll call", Command("help", topic="roll call")),
        ("", Command("help")),
        (
            "plan canary to web version=2.0.0",
            Command("plan", "canary", "web", {"version": "2.0.0"}),
        ),
        ("approve", Command("approve")),
        ("abort", Command("abort")),
        ("census", Command("census")),
        ("rollback", Command("rollback")),
        ("rollback last", Command("rollback")),
        ("rollback 1732790000.000100", Command("rollback", deployment="1732790000.000100")),
        (
            "rollback <https://acme.slack.com/archives/C0OPS00001/p1732790000000100|link>",
            Command("rollback", deployment="1732790000.000100"),
        ),
        ("history", Command("history", count=10)),
        ("history 3", Command("history", count=3)),
        ("lock web", Command("lock", env="web")),
        (
            'lock web "db migration" for 2h',
            Command("lock", env="web", reason="db migration", seconds=7200.0),
        ),
        ("lock web release freeze", Command("lock", env="web", reason="release freeze")),
        ("unlock web", Command("unlock", env="web")),
        ("self-update", Command("self-update")),
        ("self-update v0.2.0", Command("self-update", ref="v0.2.0")),
    ],
)
def test_parse(text: str, command: Command) -> None:
    assert parse(text) == command


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("dpeloy web", "deploy"),
        ("roll cal", "roll call"),
        ("stauts", "status"),
        ("histroy", "history"),
        ("rolback", "rollback"),
        ("unlcok web", "unlock"),
        ("reboot", None),
    ],
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
        ("deploy web to", "say where"),
        ("approve it", "`approve` takes no arguments"),
        ("history many", "give at most one number"),
        ("history 0", "from 1 to 50"),
        ("lock", "name the environment"),
        ("lock web for soon", "`for soon`"),
        ("lock web for 0s", "longer than 0s"),
        ("unlock", "name one environment"),
        ("lock web* now", "not an environment name"),
        ("unlock *", "not an environment name"),
        ("rollback yesterday", "not a deployment"),
        ("rollback a b", "at most one deployment"),
        ("self-update a b", "at most one ref"),
    ],
)
def test_bad_arguments_get_the_usage_line(text: str, problem: str) -> None:
    with pytest.raises(BadArguments) as info:
        parse(text)
    assert problem in str(info.value) and "Usage: `" in str(info.value)


def test_unbalanced_quotes_are_a_parse_error() -> None:
    with pytest.raises(ParseError, match="unbalanced quotes"):
        parse('deploy web note="oops')


def test_addressed_to_a_mention_or_a_prefix() -> None:
    assert addressed_to("<@U0TROUPEA> deploy web", "U0TROUPEA") == "deploy web"
    assert addressed_to("<@U0TROUPEA|troupe>: status", "U0TROUPEA") == "status"
    assert addressed_to("<@U0OTHER> deploy web", "U0TROUPEA") is None
    assert addressed_to("!troupe roll call", "U0TROUPEA", prefix="!troupe") == "roll call"
    assert addressed_to("deploy web", "U0TROUPEA") is None
    assert addressed_to("trouper deploy web", "U0TROUPEA", prefix="troupe") is None


def test_unmark() -> None:
    assert unmark("<@U123|bob> &lt;b&gt; &amp; <mailto:a@b.c|a@b.c>") == "@U123 <b> & mailto:a@b.c"


# The usage lines with every placeholder filled in: each must parse as its own verb.
_FILLED = {
    "<playbook>": "web",
    "<group|hosts>": "db",
    "key=value ...": "k=v",
    "<deployment>": "1732790000.000100",
    "[n]": "3",
    "<env>": "prod",
    "[reason]": "why",
    "<duration>": "1h",
    "[ref]": "v1",
    "[command]": "status",
}


@pytest.mark.parametrize("verb", list(USAGE))
def test_every_usage_line_filled_in_parses_as_its_verb(verb: str) -> None:
    text = USAGE[verb]
    for placeholder, value in _FILLED.items():
        text = text.replace(placeholder, value)
    text = text.replace("[", "").replace("]", "")
    assert parse(text).verb == verb, text


@pytest.mark.parametrize(
    "text",
    ["deploy canary to web version=2.4.1 note='a b'", "lock web freeze for 30m", "rollback"],
)
def test_describe_reads_back_as_the_same_command(text: str) -> None:
    assert parse(describe(parse(text))) == parse(text)


_CHAT = st.text(
    alphabet=st.sampled_from(
        list("deploy lock history rollback to = \"'<>|@#&;:.,-_0123456789aZ\u201c\n\t")
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        _CHAT,
        st.builds(
            " ".join,
            st.lists(st.sampled_from([*USAGE, "to", "for", "2h", "x=1", "'", "<@U1>"]), max_size=6),
        ),
    )
)
def test_parse_raises_nothing_but_parse_error(text: str) -> None:
    try:
        command = parse(text)
    except ParseError as exc:
        assert str(exc)  # a message for the person, never empty
    else:
        assert command.verb in USAGE
