"""troupe.config: troupe.yaml, its defaults and its sections."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from troupe.config import DEFAULT_PATH, Config, Execution, load_config
from troupe.errors import FileFormatError
from troupe.inventory import Inventory
from troupe.yamlfile import parse_model

VALID = Path(__file__).resolve().parents[1] / "fixtures" / "valid"


def test_built_in_defaults() -> None:
    config = Config()

    assert config.inventory == Inventory()
    assert config.inventory.hosts == {}
    assert config.inventory.groups == {}
    assert config.inventory.defaults.port == 22
    assert config.inventory.defaults.connect_timeout == 10.0
    assert config.execution == Execution(forks=10, playbooks_dir="playbooks")
    assert Path("troupe.yaml") == DEFAULT_PATH


def test_an_empty_mapping_is_all_defaults() -> None:
    assert parse_model("{}\n", Config) == Config()
    assert parse_model("inventory: {}\nexecution: {}\n", Config) == Config()


def test_the_file_overrides_the_defaults() -> None:
    config = parse_model("execution:\n  forks: 3\n", Config)

    assert config.execution.forks == 3
    assert config.execution.playbooks_dir == "playbooks"  # untouched settings keep defaults


def test_load_config_reads_the_example(tmp_path: Path) -> None:
    config = load_config(VALID / "troupe.yaml")

    assert config.execution == Execution(forks=20, playbooks_dir="playbooks")
    assert list(config.inventory.hosts) == ["bastion", "web1", "web2", "db1", "self"]
    assert config.inventory.defaults.connect_timeout == 5.0
    assert config.inventory.names("app") == ["web1", "web2", "db1"]


def test_load_config_takes_a_string_path() -> None:
    assert load_config(str(VALID / "troupe.yaml")).execution.forks == 20


def test_a_misspelt_section_is_refused() -> None:
    # A typo such as `inventroy:` must not silently leave the fleet empty.
    with pytest.raises(FileFormatError) as info:
        parse_model("inventroy: {}\nexecution: {forks: 2}\n", Config, "troupe.yaml")
    assert [p.field for p in info.value.problems] == ["inventroy"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("execution: {forks: 0}\n", "execution.forks"),
        ("execution: {forks: 501}\n", "execution.forks"),
        ("execution: {forks: many}\n", "execution.forks"),
        ("execution: {parallel: 4}\n", "execution.parallel"),
        ("execution: [forks]\n", "execution"),
        ("inventory: {hosts: {web1: {port: 22}}}\n", "inventory.hosts.web1"),
        ("inventory: {hostz: {}}\n", "inventory.hostz"),
    ],
)
def test_bad_settings_name_their_field(text: str, field: str) -> None:
    with pytest.raises(FileFormatError) as caught:
        parse_model(text, Config, "troupe.yaml")

    assert caught.value.problems[0].field == field
    assert caught.value.problems[0].line == 1


def test_missing_file_is_a_file_format_error(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="cannot read file"):
        load_config(tmp_path / "troupe.yaml")


def test_config_is_frozen() -> None:
    config = Config()

    with pytest.raises(ValidationError):
        config.execution = Execution(forks=1)  # type: ignore[misc]
