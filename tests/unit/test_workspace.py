"""troupe.localslack.workspace: the workspace file and the built-in default workspace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from troupe.errors import FieldProblem, FileFormatError
from troupe.localslack.workspace import (
    App,
    Workspace,
    default_workspace,
    load_workspace,
)
from troupe.yamlfile import parse_model

# The example from the workspace module's docstring (the shape promised to tests and docs).
EXAMPLE = """\
team: {id: T0TROUPE, name: troupe-dev}
users:    [{id: U0ALICE, name: alice, token: xoxp-alice}]
channels: [{id: C0OPS00001, name: ops, members: [U0ALICE, U0TROUPEA]}]
apps:     [{id: A0TROUPEA, name: troupe-a, bot_user_id: U0TROUPEA, bot_token: xoxb-...,
            app_token: xapp-..., signing_secret: ..., delivery: socket}]
"""

# One item per line so that every field has a known line number (in the comments).
TEMPLATE = """\
team:
  id: {team_id}
  name: troupe-dev
users:
  - id: {user_id}
    name: alice
    token: {user_token}
channels:
  - id: {channel_id}
    name: ops
    members: [{user_id}, U0TROUPEA]
apps:
  - id: {app_id}
    name: troupe-a
    bot_user_id: U0TROUPEA
    bot_token: {bot_token}
    app_token: {app_token}
    signing_secret: s3cr3t
"""
VALID = {
    "team_id": "T0TROUPE",  # line 2
    "user_id": "U0ALICE",  # line 5
    "user_token": "xoxp-alice",  # line 7
    "channel_id": "C0OPS00001",  # line 9
    "app_id": "A0TROUPEA",  # line 13
    "bot_token": "xoxb-troupe-a",  # line 16
    "app_token": "xapp-troupe-a",  # line 17
}
FIELD_AT = {
    "team_id": ("team.id", 2),
    "user_id": ("users[0].id", 5),
    "user_token": ("users[0].token", 7),
    "channel_id": ("channels[0].id", 9),
    "app_id": ("apps[0].id", 13),
    "bot_token": ("apps[0].bot_token", 16),
    "app_token": ("apps[0].app_token", 17),
}
BOT_ID = re.compile(r"^B[A-Z0-9]{8,}$")


def workspace_text(**changes: str) -> str:
    return TEMPLATE.format(**(VALID | changes))


def refusal(text: str) -> list[FieldProblem]:
    with pytest.raises(FileFormatError) as caught:
        parse_model(text, Workspace, "ws.yaml")
    return caught.value.problems


def app(**changes: str) -> App:
    fields = {
        "id": "A0TROUPEA",
        "name": "troupe-a",
        "bot_user_id": "U0TROUPEA",
        "bot_token": "xoxb-troupe-a",
        "app_token": "xapp-troupe-a",
        "signing_secret": "s",
    }
    return App.model_validate(fields | changes)


# ---- the example file ----------------------------------------------------------------------


def test_example_file_validates(tmp_path: Path) -> None:
    path = tmp_path / "workspace.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")

    ws = load_workspace(path)

    assert (ws.team.id, ws.team.name) == ("T0TROUPE", "troupe-dev")
    assert [(u.id, u.name, u.token) for u in ws.users] == [("U0ALICE", "alice", "xoxp-alice")]
    assert [(c.id, c.name, c.members) for c in ws.channels] == [
        ("C0OPS00001", "ops", ["U0ALICE", "U0TROUPEA"])
    ]
    [only] = ws.apps
    assert (only.id, only.bot_user_id, only.bot_token, only.app_token) == (
        "A0TROUPEA",
        "U0TROUPEA",
        "xoxb-...",
        "xapp-...",
    )
    assert only.delivery == "socket"
    assert only.http_url is None


def test_template_is_valid() -> None:
    ws = parse_model(workspace_text(), Workspace)

    assert ws.channels[0].members == ["U0ALICE", "U0TROUPEA"]


def test_unreadable_workspace_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"

    with pytest.raises(FileFormatError) as caught:
        load_workspace(path)

    assert caught.value.path == str(path)


# ---- malformed IDs and tokens ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("channel_id", "C1234567"),  # C + 7: too short
        ("channel_id", "c0ops00001"),  # lower case
        ("channel_id", "G0OPS00001"),  # not a C
        ("channel_id", "C0OPS-0001"),  # not [A-Z0-9]
        ("channel_id", "ops"),
        ("user_id", "X0ALICE"),
        ("user_id", "u0alice"),
        ("user_id", "U"),
        ("team_id", "E0TROUPE"),
        ("team_id", "t0troupe"),
        ("app_id", "B0TROUPEA"),
        ("app_id", "A"),
        ("user_token", "xoxb-alice"),
        ("user_token", "xoxp-"),
        ("user_token", "alice"),
        ("bot_token", "xoxp-troupe-a"),
        ("bot_token", "xoxb-"),
        ("bot_token", "xoxb-has space"),
        ("app_token", "xoxb-troupe-a"),
        ("app_token", "xapp-"),
    ],
)
def test_malformed_id_or_token_is_refused_with_field_and_line(key: str, bad: str) -> None:
    problems = refusal(workspace_text(**{key: bad}))

    field, line = FIELD_AT[key]
    assert (field, line) in {(p.field, p.line) for p in problems}
    mine = next(p for p in problems if p.field == field)
    assert "should match pattern" in mine.message


@pytest.mark.parametrize(
    ("key", "good"),
    [
        ("channel_id", "C12345678"),  # exactly C + 8
        ("channel_id", "C0123456789AB"),
        ("user_id", "W0ALICE"),  # Enterprise Grid user IDs start with W
        ("team_id", "T01"),
        ("app_id", "A1"),
    ],
)
def test_well_formed_ids_are_accepted(key: str, good: str) -> None:
    ws = parse_model(workspace_text(**{key: good}), Workspace)

    assert good in {ws.team.id, ws.users[0].id, ws.channels[0].id, ws.apps[0].id}


# ---- consistency -----------------------------------------------------------------------------


def test_duplicate_person_and_bot_user_id_is_refused() -> None:
    [problem] = refusal(workspace_text(user_id="U0TROUPEA"))

    assert problem.message == (
        "user IDs (people and bot users) must be unique; repeated: ['U0TROUPEA']"
    )
    assert problem.field == ""
    assert problem.line == 1


def test_duplicate_channel_id_is_refused() -> None:
    text = workspace_text().replace("apps:\n", "  - {id: C0OPS00001, name: deploys}\napps:\n")

    [problem] = refusal(text)

    assert problem.message == "channel IDs must be unique; repeated: ['C0OPS00001']"


def test_duplicate_channel_name_is_refused() -> None:
    text = workspace_text().replace("apps:\n", "  - {id: C0DEPLOYS1, name: ops}\napps:\n")

    [problem] = refusal(text)

    assert problem.message == "channel names must be unique; repeated: ['ops']"


def test_duplicate_app_id_is_refused() -> None:
    second = (
        "  - {id: A0TROUPEA, name: troupe-b, bot_user_id: U0TROUPEB, bot_token: xoxb-b,"
        " app_token: xapp-b, signing_secret: s}\n"
    )

    [problem] = refusal(workspace_text() + second)

    assert problem.message == "app IDs must be unique; repeated: ['A0TROUPEA']"


def test_duplicate_token_is_refused() -> None:
    second = (
        "  - {id: A0TROUPEB, name: troupe-b, bot_user_id: U0TROUPEB, bot_token: xoxb-troupe-a,"
        " app_token: xapp-b, signing_secret: s}\n"
    )

    [problem] = refusal(workspace_text() + second)

    assert problem.message == "tokens must be unique; repeated: ['xoxb-troupe-a']"


def test_unknown_channel_member_is_refused() -> None:
    text = workspace_text().replace("members: [U0ALICE, U0TROUPEA]", "members: [U0ALICE, U0BOB]")

    [problem] = refusal(text)

    assert problem.message == "channel #ops lists unknown members ['U0BOB']"


# ---- apps ------------------------------------------------------------------------------------


def test_bot_id_matches_slack_pattern_and_is_stable() -> None:
    a = app()

    assert BOT_ID.match(a.bot_id)
    assert a.bot_id == app().bot_id  # same app ID, same bot ID
    assert a.bot_id != app(id="A0TROUPEB").bot_id
    # Derived from a hash, not from process state: the same value in every run.
    assert app(id="A0TROUPEB").bot_id == "BRYVOOP3SGY"


def test_bot_ids_of_the_default_apps_are_distinct_and_well_formed() -> None:
    ids = [a.bot_id for a in default_workspace().apps]

    assert len(set(ids)) == 3
    assert all(BOT_ID.match(i) for i in ids)


def test_http_delivery() -> None:
    a = app(delivery={"http": "http://127.0.0.1:3000/slack/events"})  # type: ignore[arg-type]

    assert a.http_url == "http://127.0.0.1:3000/slack/events"
    assert app().http_url is None
    assert app(delivery="socket").http_url is None


def test_http_delivery_from_yaml() -> None:
    text = workspace_text() + "    delivery: {http: 'http://127.0.0.1:3000/slack/events'}\n"

    ws = parse_model(text, Workspace)

    assert ws.apps[0].http_url == "http://127.0.0.1:3000/slack/events"


def test_unknown_delivery_is_refused() -> None:
    problems = refusal(workspace_text() + "    delivery: carrier-pigeon\n")

    assert problems
    assert all(p.field.startswith("apps[0].delivery") for p in problems)
    assert all(p.line == 19 for p in problems)


def test_bad_delivery_url_names_the_http_field() -> None:
    text = workspace_text() + "    delivery:\n      http: not a url\n"

    problems = refusal(text)

    assert [(p.field, p.line) for p in problems] == [("apps[0].delivery.http", 20)]


# ---- the default workspace -----------------------------------------------------------------


def test_default_workspace() -> None:
    ws = default_workspace()

    assert (ws.team.id, ws.team.name, ws.team.url) == (
        "T0TROUPE",
        "troupe-dev",
        "https://troupe-dev.slack.com/",
    )
    assert [(u.id, u.name, u.token) for u in ws.users] == [("U0ALICE", "alice", "xoxp-alice")]
    [ops] = ws.channels
    assert (ops.id, ops.name) == ("C0OPS00001", "ops")
    assert ops.members == ["U0ALICE", "U0TROUPEA", "U0TROUPEB", "U0TROUPEC"]
    assert [(a.id, a.bot_user_id, a.bot_token, a.app_token, a.delivery) for a in ws.apps] == [
        ("A0TROUPEA", "U0TROUPEA", "xoxb-troupe-a", "xapp-troupe-a", "socket"),
        ("A0TROUPEB", "U0TROUPEB", "xoxb-troupe-b", "xapp-troupe-b", "socket"),
        ("A0TROUPEC", "U0TROUPEC", "xoxb-troupe-c", "xapp-troupe-c", "socket"),
    ]


def test_default_workspace_survives_revalidation() -> None:
    ws = default_workspace()

    assert Workspace.model_validate(ws.model_dump()) == ws


def test_lookups() -> None:
    ws = default_workspace()

    assert ws.user("U0ALICE") is ws.users[0]
    assert ws.user("U0TROUPEA") is None  # a bot user is not a person
    assert ws.app_by_bot_user("U0TROUPEB") is ws.apps[1]
    assert ws.app_by_bot_user("U0ALICE") is None


def test_team_url_prefers_domain() -> None:
    text = workspace_text().replace("  name: troupe-dev\n", "  name: troupe-dev\n  domain: acme\n")

    assert parse_model(text, Workspace).team.url == "https://acme.slack.com/"
