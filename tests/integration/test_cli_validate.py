"""`troupe validate` and `troupe schema` as a user runs them: a real process, its output and
exit code. The broken corpus is tests/fixtures/broken/, indexed by its EXPECTED.yaml."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BROKEN = FIXTURES / "broken"
VALID = FIXTURES / "valid"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load(
    (BROKEN / "EXPECTED.yaml").read_text(encoding="utf-8")
)
TROUPE = [sys.executable, "-m", "troupe.cli"]
BATCH = 25  # files per process: a process costs about a second (imports)

Run = subprocess.CompletedProcess[str]


def run_troupe(*args: str | Path, cwd: Path | None = None) -> Run:
    return subprocess.run(
        [*TROUPE, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def problems_of(stderr: str, path: Path) -> list[str]:
    """The problem lines of `path`'s "is not valid" block, without the indented path prefix."""
    lines = stderr.splitlines()
    start = lines.index(f"{path} is not valid:")
    problems = []
    for line in lines[start + 1 :]:
        if not line.startswith(f"  {path}: "):
            break
        problems.append(line.removeprefix(f"  {path}: "))
    return problems


# ---- the corpus ------------------------------------------------------------------------------


def corpus_params(kind: str) -> list[Any]:
    return [pytest.param(name, id=name) for name in sorted(EXPECTED)]


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    """Validate every broken file: batches of files per process, run side by side."""
    names = sorted(EXPECTED)
    batches = [names[i : i + BATCH] for i in range(0, len(names), BATCH)]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        done = list(pool.map(lambda b: run_troupe("validate", *(BROKEN / n for n in b)), batches))
    return {name: run for batch, run in zip(batches, done, strict=True) for name in batch}


def test_the_corpus_is_indexed() -> None:
    files = {p.name for p in BROKEN.iterdir() if p.name != "EXPECTED.yaml"}

    assert files == set(EXPECTED)
    assert len(files) >= 25
    assert sum(n.startswith("config-") for n in files) >= 10
    for name, expected in EXPECTED.items():
        assert {"line", "field"} <= set(expected), name
        assert set(expected) <= {"line", "field", "message"}, name


@pytest.mark.parametrize("name", corpus_params("report"))
def test_broken_file_is_reported_cleanly(name: str, runs: dict[str, Run]) -> None:
    run, path = runs[name], BROKEN / name

    assert "Traceback" not in run.stderr
    assert run.returncode == 2, run.stderr
    assert run.stderr.count(f"{path} is not valid:") == 1
    assert len(problems_of(run.stderr, path)) >= 1
    assert f"ok: {path}\n" not in run.stdout
    batch = run.args[4:]
    assert run.stderr.count(" is not valid:") == len(batch)
    assert f"troupe: {len(batch)} of {len(batch)} files are not valid" in run.stderr


@pytest.mark.parametrize("name", corpus_params("location"))
def test_first_problem_names_line_and_field(name: str, runs: dict[str, Run]) -> None:
    expected, path = EXPECTED[name], BROKEN / name
    assert "Traceback" not in runs[name].stderr

    first = problems_of(runs[name].stderr, path)[0]

    if expected["line"] is None:
        assert not first.startswith("line "), first
    else:
        assert first.startswith(f"line {expected['line']}: "), first
        first = first.removeprefix(f"line {expected['line']}: ")
    field, _, message = first.partition(": ")
    assert expected["field"] in field, first
    assert expected.get("message", "") in message, first


# ---- valid files, mixes, defaults ----------------------------------------------------------


def test_valid_files_are_ok() -> None:
    paths = sorted(VALID.glob("*.yaml"))

    run = run_troupe("validate", *paths)

    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"ok: {p}" for p in paths]
    assert run.stderr == ""


def test_a_mix_reports_every_file_and_fails() -> None:
    good, config = VALID / "canary.yaml", VALID / "troupe.yaml"
    bad_book, bad_config = BROKEN / "playbook-timeout-soon.yaml", BROKEN / "config-port-70000.yaml"

    run = run_troupe("validate", good, bad_book, config, bad_config)

    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stdout.splitlines() == [f"ok: {good}", f"ok: {config}"]
    assert problems_of(run.stderr, bad_book)[0].startswith("line 7: tasks[0].timeout: ")
    assert problems_of(run.stderr, bad_config)[0].startswith("line 5: inventory.hosts.web2.port")
    assert run.stderr.rstrip().endswith("troupe: 2 of 4 files are not valid")


def test_a_missing_file_is_reported() -> None:
    missing = VALID / "no-such-playbook.yaml"

    run = run_troupe("validate", missing)

    assert run.returncode == 2
    assert problems_of(run.stderr, missing) == [
        "(top level): cannot read file (No such file or directory)"
    ]
    assert "Traceback" not in run.stderr


def test_without_arguments_validates_troupe_yaml_and_the_playbooks_dir(tmp_path: Path) -> None:
    (tmp_path / "troupe.yaml").write_text((VALID / "troupe.yaml").read_text())
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "canary.yaml").write_text((VALID / "canary.yaml").read_text())
    (tmp_path / "playbooks" / "broken.yaml").write_text("name: broken\ntasks: []\n")
    (tmp_path / "playbooks" / "notes.txt").write_text("not a playbook")

    run = run_troupe("validate", cwd=tmp_path)

    assert run.returncode == 2
    assert run.stdout.splitlines() == ["ok: troupe.yaml", "ok: playbooks/canary.yaml"]
    assert problems_of(run.stderr, Path("playbooks/broken.yaml")) == [
        "line 2: tasks: List should have at least 1 item after validation, not 0"
    ]


def test_a_file_named_troupe_yaml_is_validated_as_a_config(tmp_path: Path) -> None:
    # No `inventory:` or `execution:` section to recognise it by: the name decides.
    path = tmp_path / "troupe.yaml"
    path.write_text("# nothing yet: every section has a default\n{}\n")

    run = run_troupe("validate", path)

    assert (run.returncode, run.stdout) == (0, f"ok: {path}\n")


# ---- schema ----------------------------------------------------------------------------------


def schema_of(kind: str) -> dict[str, Any]:
    run = run_troupe("schema", kind)
    assert run.returncode == 0, run.stderr
    schema: dict[str, Any] = json.loads(run.stdout)
    return schema


@pytest.fixture(scope="module")
def playbook_schema() -> dict[str, Any]:
    return schema_of("playbook")


@pytest.fixture(scope="module")
def config_schema() -> dict[str, Any]:
    return schema_of("config")


def jsonschema_module() -> Any:
    """jsonschema if it is installed (it is not a dependency); None otherwise."""
    try:
        return importlib.import_module("jsonschema")
    except ImportError:
        return None


def test_playbook_schema(playbook_schema: dict[str, Any]) -> None:
    schema = playbook_schema
    defs = schema["$defs"]

    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert {"name", "tasks", "strategy", "vars", "checks", "verify", "rollback"} <= set(
        schema["properties"]
    )
    assert set(schema["required"]) == {"name", "tasks"}
    assert schema["properties"]["name"]["pattern"] == "^[a-z0-9][a-z0-9_-]{0,62}$"
    assert schema["properties"]["tasks"]["minItems"] == 1
    assert {"run", "put", "sudo", "timeout", "retries", "when"} <= set(defs["Task"]["properties"])
    assert {"rolling", "canary"} == set(defs["Strategy"]["properties"])
    assert all(d.get("additionalProperties") is False for d in defs.values() if "properties" in d)
    jsonschema = jsonschema_module()
    if jsonschema is not None:
        jsonschema.Draft202012Validator.check_schema(schema)


def test_config_schema(config_schema: dict[str, Any]) -> None:
    schema = config_schema

    assert schema["type"] == "object"
    assert {"inventory", "execution"} <= set(schema["properties"])
    assert schema.get("additionalProperties") is False  # a misspelt section is an error
    defs = schema["$defs"]
    assert {"defaults", "hosts", "groups"} <= set(defs["Inventory"]["properties"])
    assert {"address", "connection", "jump", "port", "vars"} <= set(defs["HostSpec"]["properties"])
    assert defs["Execution"]["properties"]["forks"]["minimum"] == 1
    jsonschema = jsonschema_module()
    if jsonschema is not None:
        jsonschema.Draft202012Validator.check_schema(schema)


def allows_strings(prop: dict[str, Any]) -> bool:
    """Whether free text (not just a constant) is allowed, looking into nested anyOf."""
    if prop.get("type") == "string" and "const" not in prop:
        return True
    return any(allows_strings(k) for k in prop.get("anyOf", []))


def test_schema_accepts_durations_and_percentages_as_written(
    playbook_schema: dict[str, Any], config_schema: dict[str, Any]
) -> None:
    defs = playbook_schema["$defs"]
    config_defs = config_schema["$defs"]

    assert allows_strings(defs["Task"]["properties"]["timeout"])
    assert allows_strings(defs["Check"]["properties"]["interval"])
    assert allows_strings(defs["PauseStep"]["properties"]["pause"])
    assert allows_strings(defs["Rolling"]["properties"]["max_fail_percentage"])
    assert allows_strings(defs["CheckStep"]["properties"]["success"])
    assert allows_strings(config_defs["HostDefaults"]["properties"]["connect_timeout"])
    jsonschema = jsonschema_module()
    if jsonschema is not None:
        for name in ("rolling.yaml", "canary.yaml"):
            data = yaml.safe_load((VALID / name).read_text(encoding="utf-8"))
            jsonschema.validate(data, playbook_schema)


def test_schema_of_an_unknown_kind_is_an_input_error() -> None:
    run = run_troupe("schema", "workspace")

    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "workspace" in run.stderr
