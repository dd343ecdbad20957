"""`troupe localslack`: run the local Slack-compatible server (loaded only when used)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from troupe import __version__
from troupe.localslack.delivery import Timing
from troupe.localslack.faults import Faults, parse_error_spec
from troupe.localslack.server import LocalSlack, Settings
from troupe.localslack.workspace import Workspace, default_workspace, load_workspace


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


@click.command()
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
