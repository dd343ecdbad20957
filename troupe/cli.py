"""The `troupe` command. Every TroupeError becomes a clear message and an exit code;
a Python traceback never reaches the user."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import click

from troupe import __version__
from troupe.config import DEFAULT_PATH as DEFAULT_CONFIG
from troupe.config import Config, load_config
from troupe.errors import InputError, TroupeError
from troupe.executor import Executor, Hooks
from troupe.inventory import Host
from troupe.planner import Plan, make_plan
from troupe.playbooks import Playbook, load_playbook, parse_assignments
from troupe.remote import connect
from troupe.report import plan_text, result_text
from troupe.terminal import TerminalReporter


class LazyGroup(click.Group):
    """Subcommands imported on first use (click's documented lazy-loading pattern), so
    `troupe play` does not pay for importing the localslack server stack."""

    lazy: ClassVar[dict[str, str]] = {
        "localslack": "troupe.localslack.cli:localslack",
        "run": "troupe.runner:run",
        "sandbox": "troupe.sandbox:sandbox",
        "self-update": "troupe.selfupdate:command",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, _, attr = self.lazy[name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="troupe")
def cli() -> None:
    """Troupe: ChatOps bot replicas that deploy software from Slack."""


# ---- playbooks --------------------------------------------------------------------------------

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="troupe.yaml with the inventory.",
)
vars_option = click.option(
    "-e",
    "--extra",
    "extra",
    multiple=True,
    metavar="KEY=VALUE",
    help="A playbook variable (repeatable); always data, never shell code.",
)
limit_option = click.option("--limit", default=None, help="Only these hosts or groups (commas).")


@dataclass(frozen=True)
class Prepared:
    config: Config
    playbook: Playbook
    path: Path
    hosts: list[Host]
    given: dict[str, str]
    plan: Plan


def _prepare(name: str, config_path: Path, extra: tuple[str, ...], limit: str | None) -> Prepared:
    if not config_path.exists():
        raise InputError(f"no configuration file {config_path} (give one with -c)")
    config = load_config(config_path)
    path = _playbook_path(name, config)
    playbook = load_playbook(path)
    hosts = config.inventory.select(playbook.hosts, limit)
    given = parse_assignments(extra)
    for host in hosts:
        playbook.resolve_vars(given, host.vars)  # refuse bad values before planning
    plan = make_plan(playbook, hosts, config.execution.forks)
    return Prepared(config, playbook, path, hosts, given, plan)


def _playbook_path(name: str, config: Config) -> Path:
    """A path as given, or a name looked up in the playbooks directory."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return Path(config.execution.playbooks_dir) / f"{name}.yaml"


@cli.command()
@click.argument("playbook")
@config_option
@vars_option
@limit_option
def plan(playbook: str, config_path: Path, extra: tuple[str, ...], limit: str | None) -> None:
    """Show what PLAYBOOK would do, batch by batch, without touching a host."""
    prepared = _prepare(playbook, config_path, extra, limit)
    click.echo(plan_text(prepared.plan, prepared.playbook))


@cli.command()
@click.argument("playbook")
@config_option
@vars_option
@limit_option
@click.option("--check", "check_mode", is_flag=True, help="Connect and render, change nothing.")
@click.option("--yes", "assume_yes", is_flag=True, help="Approve approval steps and pauses.")
def play(
    playbook: str,
    config_path: Path,
    extra: tuple[str, ...],
    limit: str | None,
    check_mode: bool,
    assume_yes: bool,
) -> None:
    """Run PLAYBOOK on the fleet. Exit codes: 0 succeeded, 1 failed (rolled back),
    2 invalid input, 3 rollback incomplete, 4 not approved (rolled back), 130 interrupted."""
    prepared = _prepare(playbook, config_path, extra, limit)
    stop = threading.Event()
    reporter = TerminalReporter([h.name for h in prepared.hosts], assume_yes)
    hooks = Hooks(on_event=reporter.on_event, approve=reporter.approve, stop=stop)
    executor = Executor(
        prepared.playbook,
        prepared.plan,
        prepared.hosts,
        prepared.given,
        connect,
        hooks,
        files_dir=prepared.path.parent,
        forks=prepared.config.execution.forks,
        check_mode=check_mode,
    )
    with _stop_on_signals(stop), reporter:
        result = executor.run()
    click.echo(result_text(result))
    sys.exit(result.outcome.exit_code)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): stop at the next safe point. Second: stop now."""

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            # Commands in flight are abandoned: their hosts' state is unknown.
            click.echo(
                "quitting now; hosts with a command in flight are in an unknown state", err=True
            )
            os._exit(130)
        stop.set()
        click.echo("stopping at the next safe point (Ctrl-C again to quit now)", err=True)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def validate(files: tuple[Path, ...]) -> None:
    """Check playbooks and troupe.yaml files (default: troupe.yaml and playbooks/*.yaml)."""
    paths = list(files) or _default_files()
    problems = 0
    for path in paths:
        try:
            _validate_one(path)
        except InputError as exc:
            problems += 1
            click.echo(str(exc), err=True)
        else:
            click.echo(f"ok: {path}")
    if problems:
        raise InputError(f"{problems} of {len(paths)} files are not valid")


def _default_files() -> list[Path]:
    return [p for p in [DEFAULT_CONFIG, *sorted(Path("playbooks").glob("*.yaml"))] if p.exists()]


def _validate_one(path: Path) -> None:
    """A file with an `inventory` or `execution` section is a config; others are playbooks."""
    # Only to tell the kinds apart; the loader itself reports encoding problems.
    text = path.read_bytes().decode("utf-8", "replace") if path.is_file() else ""
    if path.name in ("troupe.yaml", "troupe.yml") or re.search(
        r"^(inventory|execution):", text, re.M
    ):
        load_config(path)
    else:
        load_playbook(path)


@cli.command()
@click.argument("kind", type=click.Choice(["playbook", "config"]))
def schema(kind: str) -> None:
    """Print the JSON Schema of a playbook or of troupe.yaml (for editors)."""
    model = Playbook if kind == "playbook" else Config
    click.echo(json.dumps(model.model_json_schema(mode="validation"), indent=2))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(InputError.exit_code)
    except TroupeError as exc:
        click.echo(f"troupe: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    with contextlib.suppress(Exception):
        sys.stdout.flush()


if __name__ == "__main__":
    main()
