"""The `troupe` command. Every TroupeError becomes a clear message and an exit code;
a Python traceback never reaches the user."""

from __future__ import annotations

import asyncio
import contextlib
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

import click

from troupe import __version__
from troupe.config import DEFAULT_PATH as DEFAULT_CONFIG
from troupe.config import Config, load_config
from troupe.errors import InputError, TroupeError
from troupe.executor import Executor, Hooks
from troupe.inventory import Host
from troupe.localslack.delivery import Timing
from troupe.localslack.faults import Faults, parse_error_spec
from troupe.localslack.server import LocalSlack, Settings
from troupe.localslack.workspace import Workspace, default_workspace, load_workspace
from troupe.planner import Plan, make_plan
from troupe.playbooks import Playbook, load_playbook, parse_assignments
from troupe.remote import connect
from troupe.report import plan_text, result_text
from troupe.terminal import TerminalReporter


@click.group()
@click.version_option(__version__, prog_name="troupe")
def cli() -> None:
    """Troupe: ChatOps bot replicas that deploy software from Slack."""


def _rate_scale(value: str) -> float:
    if value == "off":
        return 0.0
    try:
        scale = float(value)
    except ValueError:
        scale = -1
    if scale < 0:
        raise click.BadParameter("expected 'off' or a factor >= 0 (e.g. 10 = ten times faster)")
    return scale


def _delays(value: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        delays = (-1,)
    if any(d < 0 for d in delays):
        raise click.BadParameter("expected seconds separated by commas, e.g. 0,60,300")
    return delays


@cli.command()
@click.option(
    "--workspace",
    "workspace_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Workspace YAML (default: built-in, one person, #ops, three apps).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8310, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--state",
    "state_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Keep messages, pins and reactions in this file across restarts.",
)
@click.option(
    "--rate-limits",
    "rate_limits",
    default="1",
    show_default=True,
    help="'off', or a factor that speeds up every refill (1 = Slack's tiers).",
)
@click.option(
    "--error",
    "errors",
    multiple=True,
    metavar="METHOD=CODE[/STATUS][@P]",
    help="Inject an error, e.g. pins.add=internal_error@0.2 (repeatable).",
)
@click.option(
    "--latency",
    "latency_ms",
    default=0.0,
    type=click.FloatRange(0),
    help="Milliseconds added to every Web API call.",
)
@click.option(
    "--non-atomic-pins",
    "non_atomic_ms",
    default=0.0,
    type=click.FloatRange(0),
    help="Window (ms) in which concurrent pins.add calls may all succeed.",
)
@click.option(
    "--ack-timeout",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0.01),
    help="Seconds before an unacked Socket Mode envelope is redelivered.",
)
@click.option(
    "--retry-delays",
    default="0,60,300",
    show_default=True,
    help="Seconds before each event redelivery (Socket Mode and HTTP).",
)
def localslack(
    workspace_file: Path | None,
    host: str,
    port: int,
    state_file: Path | None,
    rate_limits: str,
    errors: tuple[str, ...],
    latency_ms: float,
    non_atomic_ms: float,
    ack_timeout: float,
    retry_delays: str,
) -> None:
    """Run a local Slack-compatible server (Web API, Socket Mode, Events API)."""
    workspace = load_workspace(workspace_file) if workspace_file else default_workspace()
    settings = Settings(
        host=host,
        port=port,
        state_path=state_file,
        rate_limit_scale=_rate_scale(rate_limits),
        timing=Timing(ack_timeout=ack_timeout, retry_delays=_delays(retry_delays)),
        faults=Faults(
            errors=[parse_error_spec(s) for s in errors],
            latency_ms=latency_ms,
            non_atomic_pins_ms=non_atomic_ms,
        ),
    )
    asyncio.run(_serve(LocalSlack(workspace, settings), show_tokens=workspace_file is None))


async def _serve(server: LocalSlack, show_tokens: bool) -> None:
    await server.start()
    click.echo(_banner(server, show_tokens))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
        click.echo("localslack stopped" + (", state saved" if server.settings.state_path else ""))


def _banner(server: LocalSlack, show_tokens: bool) -> str:
    ws: Workspace = server.store.workspace
    lines = [
        f"localslack {__version__}: workspace {ws.team.name} ({ws.team.id}) on {server.url}",
        f"  Web API base_url: {server.url}/api/",
        f"  channels: {', '.join('#' + c.name + ' ' + c.id for c in ws.channels)}",
    ]
    if show_tokens:
        lines.append("  tokens of the built-in workspace (local use only):")
        lines += [f"    person {u.name} ({u.id}): {u.token}" for u in ws.users]
        lines += [
            f"    app {a.name} ({a.id}, bot {a.bot_user_id}): bot {a.bot_token}, "
            f"app {a.app_token}, signing secret {a.signing_secret}"
            for a in ws.apps
        ]
    lines.append(
        "  connect: WebClient(token=..., base_url='" + server.url + "/api/'); Ctrl-C stops"
    )
    return "\n".join(lines)


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
