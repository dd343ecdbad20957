"""The Slack app manifests in deploy/slack/ grant what the code uses, derived from the code.

The code under troupe/ is parsed (never imported) for:
- Web API methods: string literals passed to `.call(...)`, `._pages(...)` or
  `.api_call(...)`, and slack_sdk WebClient methods called as `client.<method>(...)`
  (`client.auth_test` -> `auth.test`). `Chat`'s helpers (pin, post, react, ...) are
  covered through the literals in troupe/chat.py;
- events: `app.event("...")`, `app.event(NAME)` where NAME loops over a literal tuple,
  `app.message(...)` (a message event);
- interactivity: any `app.action(...)`, `app.view(...)`, `app.shortcut(...)`.

Methods map to scopes through Slack's OpenAPI spec (shared/slack/spec, the `security`
of each method), events through the table in shared/slack/SLACK-SEMANTICS.md §6. The
test fails when the code uses a method or an event that a manifest does not grant:
that is its point. localslack (the server side) and the sandbox's people are not the app.
"""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_sdk import WebClient
from slack_sdk.web.base_client import BaseClient

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "slack"
MANIFESTS = sorted((ROOT / "deploy" / "slack").rglob("*.yaml"))
NOT_THE_APP = ("troupe/localslack/", "troupe/sandbox.py", "troupe/sshfleet.py")

# SLACK-SEMANTICS.md §6: which subscription delivers an event type, and its scope.
# `message` is subscribed as message.channels (the fleet's channel is a public one).
EVENT_SUBSCRIPTION = {
    "message": ("message.channels", "channels:history"),
    "app_mention": ("app_mention", "app_mentions:read"),
    "reaction_added": ("reaction_added", "reactions:read"),
    "reaction_removed": ("reaction_removed", "reactions:read"),
    "pin_added": ("pin_added", "pins:read"),
    "pin_removed": ("pin_removed", "pins:read"),
}
# The 2021 OpenAPI spec still names the legacy chat:write:bot; granular bot apps have
# chat:write (https://api.slack.com/scopes/chat:write).
LEGACY_SCOPES = {"chat:write:bot": "chat:write", "chat:write:user": "chat:write"}
# Methods that need no bot scope: auth.test needs none; apps.connections.open uses the
# app-level token (connections:write), which is not part of the bot's scopes.
NO_BOT_SCOPE = {"auth.test", "apps.connections.open"}


# ---- what the code uses -------------------------------------------------------------------


def _sources() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted((ROOT / "troupe").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(NOT_THE_APP):
            out.append((rel, ast.parse(path.read_text(), rel)))
    return out


def _loop_values(tree: ast.Module, call: ast.Call, name: str) -> list[str]:
    """The literal strings a `for name in (...)` around `call` gives `name`."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and node.target.id == name
            and isinstance(node.iter, ast.Tuple | ast.List)
            and any(inner is call for inner in ast.walk(node))
        ):
            return [str(e.value) for e in node.iter.elts if isinstance(e, ast.Constant)]
    raise AssertionError(f"cannot tell which events `{name}` stands for at line {call.lineno}")


def _event_names(tree: ast.Module, call: ast.Call) -> list[str]:
    arg = call.args[0] if call.args else None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.Dict):  # app.event({"type": "message", "subtype": ...})
        for key, value in zip(arg.keys, arg.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "type":
                assert isinstance(value, ast.Constant)
                return [str(value.value)]
    if isinstance(arg, ast.Name):
        return _loop_values(tree, call, arg.id)
    raise AssertionError(f"app.event with an argument this test cannot read: line {call.lineno}")


@cache
def used() -> tuple[frozenset[str], frozenset[str], bool]:
    """(Web API methods, event types, uses interactivity) over troupe/."""
    # WebClient's own methods are Web API methods; BaseClient's (api_call, ...) are not.
    client_methods = {m for m in set(dir(WebClient)) - set(dir(BaseClient)) if "_" in m}
    methods: set[str] = set()
    events: set[str] = set()
    interactive = False
    for _rel, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            attr, owner = node.func.attr, node.func.value
            first = node.args[0] if node.args else None
            if attr in ("call", "_pages", "api_call") and isinstance(first, ast.Constant):
                if isinstance(first.value, str) and "." in first.value:
                    methods.add(first.value)
            elif attr in client_methods and _is_client(owner):
                methods.add(attr.replace("_", "."))
            elif _is_app(owner) and attr == "event":
                events.update(_event_names(tree, node))
            elif _is_app(owner) and attr == "message":
                events.add("message")
            elif _is_app(owner) and attr in ("action", "view", "shortcut", "block_action"):
                interactive = True
    return frozenset(methods), frozenset(events), interactive


def _is_client(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "client") or (
        isinstance(node, ast.Attribute) and node.attr == "client"
    )


def _is_app(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "app") or (
        isinstance(node, ast.Attribute) and node.attr == "app"
    )


# ---- what Slack says -------------------------------------------------------------------------


@cache
def _openapi() -> dict[str, Any]:
    return dict(json.loads((SHARED / "spec" / "slack_web_openapi_v2.json").read_text()))


def scopes_for(method: str) -> set[str]:
    """Any one of these bot scopes allows `method` (empty: it needs none)."""
    if method in NO_BOT_SCOPE:
        return set()
    path = _openapi()["paths"].get(f"/{method}")
    assert path is not None, f"{method} is not in Slack's Web API spec"
    scopes = set()
    for operation in path.values():
        for requirement in operation.get("security", []):
            for scope in requirement.get("slackAuth", []):
                scopes.add(LEGACY_SCOPES.get(scope, scope))
    scopes.discard("none")
    return scopes


@cache
def _event_topics() -> set[str]:
    spec = json.loads((SHARED / "spec" / "slack_events_api_async_v1.json").read_text())
    return set(spec["topics"])


# ---- the tests -----------------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def test_the_code_is_understood() -> None:
    """The derivation finds what we know is there (a broken parser must not pass)."""
    methods, events, _ = used()
    assert {"pins.add", "pins.remove", "chat.postMessage", "conversations.replies"} <= methods
    assert {"message", "app_mention"} <= events


def test_every_manifest_is_found() -> None:
    names = {p.relative_to(ROOT / "deploy" / "slack").as_posix() for p in MANIFESTS}
    assert {"shared-app.socket.yaml", "shared-app.http.yaml"} <= names
    for replica in "abc":
        for delivery in ("socket", "http"):
            assert f"one-app-per-replica/replica-{replica}.{delivery}.yaml" in names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_grants_every_scope_and_event_the_code_uses(path: Path) -> None:
    manifest = _load(path)
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    settings = manifest["settings"]
    bot_events = set(settings["event_subscriptions"]["bot_events"])
    methods, events, interactive = used()

    missing_methods = {
        m: scopes_for(m) for m in methods if scopes_for(m) and not scopes & scopes_for(m)
    }
    assert not missing_methods, f"{path.name} lacks a scope for {missing_methods}"
    for event in events:
        assert event in EVENT_SUBSCRIPTION, (
            f"add {event!r} to EVENT_SUBSCRIPTION (SLACK-SEMANTICS §6)"
        )
        subscription, scope = EVENT_SUBSCRIPTION[event]
        assert subscription in bot_events, f"{path.name}: subscribe to {subscription}"
        assert scope in scopes, f"{path.name}: {subscription} needs {scope}"
    if interactive:
        assert settings["interactivity"]["is_enabled"] is True, f"{path.name}: buttons need it"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_well_formed_for_its_delivery(path: Path) -> None:
    manifest = _load(path)
    assert set(manifest) == {"display_information", "features", "oauth_config", "settings"}
    assert 1 <= len(manifest["display_information"]["name"]) <= 35  # Slack's limit
    assert manifest["features"]["bot_user"]["display_name"]
    settings = manifest["settings"]
    for event in settings["event_subscriptions"]["bot_events"]:
        assert event.replace("_", ".") in _event_topics(), f"{path.name}: unknown event {event}"
    known = {s for m in _openapi()["paths"] for s in scopes_for(m.lstrip("/"))} | {
        "app_mentions:read"
    }
    assert set(manifest["oauth_config"]["scopes"]["bot"]) <= known
    socket = path.name.endswith(".socket.yaml")
    assert settings["socket_mode_enabled"] is socket
    for section in ("event_subscriptions", "interactivity"):
        url = settings[section].get("request_url")
        if socket:
            assert url is None, f"{path.name}: Socket Mode has no request URL"
        else:  # bolt serves events and clicks on slack.http.path
            assert url is not None and url.startswith("https://") and url.endswith("/slack/events")


def test_one_app_per_replica_manifests_differ_only_in_names() -> None:
    def without_names(path: Path) -> dict[str, Any]:
        data = _load(path)
        data["display_information"].pop("name")
        data["features"]["bot_user"].pop("display_name")
        return data

    per_replica = ROOT / "deploy" / "slack" / "one-app-per-replica"
    for delivery in ("socket", "http"):
        paths = sorted(per_replica.glob(f"*.{delivery}.yaml"))
        names = {_load(p)["features"]["bot_user"]["display_name"] for p in paths}
        assert len(names) == len(paths), "each replica is its own bot user"
        shared = without_names(ROOT / "deploy" / "slack" / f"shared-app.{delivery}.yaml")
        assert all(without_names(p) == shared for p in paths)
