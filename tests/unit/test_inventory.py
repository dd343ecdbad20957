"""troupe.inventory: hosts and groups, defaults, jump hosts and choosing target hosts."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from troupe.errors import InputError
from troupe.inventory import Host, Inventory

FLEET: dict[str, Any] = {
    "defaults": {
        "user": "deploy",
        "port": 2200,
        "key_file": "/keys/troupe",
        "connect_timeout": "3s",
    },
    "hosts": {
        "bastion": {"address": "203.0.113.5", "user": "jump"},
        "web1": {"address": "10.0.0.11", "vars": {"port": 8080}},
        "web2": {"address": "10.0.0.12", "jump": "bastion"},
        "web3": {"address": "10.0.0.13", "port": 22, "key_file": "/keys/web3"},
        "db1": {"address": "10.0.0.21", "jump": "web2"},
        "self": {"connection": "local"},
    },
    "groups": {
        "web": ["web1", "web2", "web3"],
        "db": ["db1"],
        "app": ["db", "web"],  # groups may contain groups
        "edge": ["bastion", "web1"],
    },
}


@pytest.fixture
def fleet() -> Inventory:
    return Inventory.model_validate(FLEET)


def names(hosts: list[Host]) -> list[str]:
    return [h.name for h in hosts]


# ---- selecting hosts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("web", ["web1", "web2", "web3"]),
        ("web2", ["web2"]),
        ("all", ["bastion", "web1", "web2", "web3", "db1", "self"]),
        ("db,web1", ["web1", "db1"]),
        ("app", ["web1", "web2", "web3", "db1"]),
        (" web1 , db1 ", ["web1", "db1"]),
        ("web,web2,web", ["web1", "web2", "web3"]),  # each host once
        ("web,edge", ["bastion", "web1", "web2", "web3"]),
        ("web1,", ["web1"]),  # an empty part is ignored
    ],
)
def test_select_by_group_host_or_comma_list(
    fleet: Inventory, target: str, expected: list[str]
) -> None:
    assert names(fleet.select(target)) == expected


def test_select_keeps_inventory_order_not_target_order(fleet: Inventory) -> None:
    assert names(fleet.select("db1,web3,web1")) == ["web1", "web3", "db1"]
    assert fleet.names("self,bastion") == ["bastion", "self"]


@pytest.mark.parametrize(
    ("target", "limit", "expected"),
    [
        ("web", "web2", ["web2"]),
        ("web", "web1,web3", ["web1", "web3"]),
        ("app", "edge", ["web1"]),  # the intersection of two groups
        ("all", "db", ["db1"]),
        ("web", None, ["web1", "web2", "web3"]),
        ("web", "", ["web1", "web2", "web3"]),  # an empty --limit limits nothing
    ],
)
def test_limit_narrows_the_target(
    fleet: Inventory, target: str, limit: str | None, expected: list[str]
) -> None:
    assert names(fleet.select(target, limit)) == expected


def test_limit_outside_the_target_matches_nothing(fleet: Inventory) -> None:
    with pytest.raises(InputError, match="no hosts match 'web' with --limit 'db1'"):
        fleet.select("web", "db1")


@pytest.mark.parametrize("target", ["wbe", "web,nope", "web4", "ALL", "Web"])
def test_unknown_target_is_an_input_error(fleet: Inventory, target: str) -> None:
    with pytest.raises(InputError, match="no host or group named") as caught:
        fleet.select(target)

    assert caught.value.exit_code == 2


def test_unknown_limit_is_an_input_error(fleet: Inventory) -> None:
    with pytest.raises(InputError, match="no host or group named 'web9'"):
        fleet.select("web", "web9")


@pytest.mark.parametrize("target", ["", " , "])
def test_empty_target_matches_nothing(fleet: Inventory, target: str) -> None:
    with pytest.raises(InputError, match="no hosts match"):
        fleet.select(target)


def test_empty_inventory_has_no_hosts() -> None:
    with pytest.raises(InputError, match="no hosts match 'all'"):
        Inventory().select("all")


# ---- resolved hosts ---------------------------------------------------------------------


def test_defaults_fill_what_a_host_leaves_out(fleet: Inventory) -> None:
    host = fleet.host("web1")

    assert host == Host(
        name="web1",
        connection="ssh",
        address="10.0.0.11",
        port=2200,
        user="deploy",
        key_file="/keys/troupe",
        connect_timeout=3.0,
        jump=None,
        vars={"port": 8080},
    )


def test_a_host_overrides_the_defaults(fleet: Inventory) -> None:
    web3 = fleet.host("web3")
    bastion = fleet.host("bastion")

    assert (web3.port, web3.key_file, web3.user) == (22, "/keys/web3", "deploy")
    assert (bastion.user, bastion.port) == ("jump", 2200)


def test_built_in_defaults() -> None:
    inventory = Inventory.model_validate({"hosts": {"h": {"address": "192.0.2.1"}}})

    host = inventory.host("h")

    assert (host.port, host.user, host.key_file, host.connect_timeout) == (22, None, None, 10.0)
    assert host.vars == {}


def test_jump_hosts_are_resolved_as_a_chain(fleet: Inventory) -> None:
    db1 = fleet.host("db1")

    assert db1.jump is not None
    assert db1.jump.name == "web2"
    assert db1.jump.jump is not None
    assert db1.jump.jump.name == "bastion"
    assert db1.jump.jump.user == "jump"
    assert db1.jump.jump.jump is None


def test_local_connection_needs_no_address(fleet: Inventory) -> None:
    host = fleet.host("self")

    assert host.connection == "local"
    assert host.address == "127.0.0.1"
    assert host.jump is None


def test_template_view_is_what_playbooks_see_as_host(fleet: Inventory) -> None:
    assert fleet.host("web1").template_view() == {
        "name": "web1",
        "address": "10.0.0.11",
        "port": 2200,
        "vars": {"port": 8080},
    }


def test_hosts_are_frozen(fleet: Inventory) -> None:
    host = fleet.host("web1")

    with pytest.raises(ValidationError):
        host.address = "10.9.9.9"  # type: ignore[misc]


# ---- validation ----------------------------------------------------------------------------


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Inventory.model_validate(data)
    return str(caught.value)


def test_group_with_an_unknown_host_is_refused() -> None:
    message = problem({"hosts": {"web1": {"address": "a"}}, "groups": {"web": ["web1", "web3"]}})

    assert "group 'web' lists unknown hosts ['web3']" in message


@pytest.mark.parametrize("group", ["web1", "all"])
def test_group_named_like_a_host_or_all_is_refused(group: str) -> None:
    message = problem({"hosts": {"web1": {"address": "a"}}, "groups": {group: ["web1"]}})

    assert f"group {group!r} has the name of a host" in message


def test_unknown_jump_host_is_refused() -> None:
    message = problem({"hosts": {"web1": {"address": "a", "jump": "bastion"}}})

    assert "jump host 'bastion' is not in hosts" in message


@pytest.mark.parametrize(
    "hosts",
    [
        {"a": {"address": "1", "jump": "a"}},
        {"a": {"address": "1", "jump": "b"}, "b": {"address": "2", "jump": "a"}},
        {
            "a": {"address": "1", "jump": "b"},
            "b": {"address": "2", "jump": "c"},
            "c": {"address": "3", "jump": "b"},
        },
    ],
)
def test_jump_loops_are_refused(hosts: dict[str, Any]) -> None:
    assert "jump hosts form a loop" in problem({"hosts": hosts})


def test_ssh_host_needs_an_address() -> None:
    assert "an ssh host needs an address" in problem({"hosts": {"web1": {"user": "deploy"}}})


@pytest.mark.parametrize(
    "data",
    [
        {"hosts": {"web1": {"address": "a", "port": 70000}}},
        {"hosts": {"web1": {"address": "a", "port": 0}}},
        {"defaults": {"port": 65536}},
        {"hosts": {"web1": {"address": "a", "connection": "docker"}}},
        {"hosts": {"web1": {"address": "a", "ansible_host": "b"}}},
        {"hosts": {"web 1": {"address": "a"}}},
        {"hosts": {"-web": {"address": "a"}}},
        {"groups": {"web": "web1"}, "hosts": {"web1": {"address": "a"}}},
        {"defaults": {"connect_timeout": "soon"}},
        {"hostz": {}},
    ],
)
def test_malformed_inventory_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Inventory.model_validate(data)


def test_names_may_have_dots_and_dashes() -> None:
    inventory = Inventory.model_validate(
        {
            "hosts": {"web-1.example.com": {"address": "a"}},
            "groups": {"web_eu-1": ["web-1.example.com"]},
        }
    )

    assert inventory.names("web_eu-1") == ["web-1.example.com"]


def test_group_loops_are_refused_when_the_inventory_is_validated() -> None:
    data = {"hosts": {"web1": {"address": "a"}}, "groups": {"a": ["b", "web1"], "b": ["a"]}}

    assert "contains itself" in problem(data)
