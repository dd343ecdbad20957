"""Edge: showing a run on a terminal, and asking a person there.

On a TTY a rich live table of hosts; otherwise plain lines (report.event_line),
so logs and CI output stay readable. Approvals prompt on a TTY; elsewhere they
need `--yes` (an unattended run never waits on a prompt nobody sees).
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from troupe.progress import ApprovalNeeded, Event, HostDone, HostRolledBack, RunFinished, StepDone
from troupe.report import event_line

_STYLE = {
    "pending": "dim",
    "running": "yellow",
    "ok": "green",
    "failed": "bold red",
    "rolled back": "magenta",
    "rollback failed": "bold red",
    "interrupted": "yellow",
}


class TerminalReporter:
    def __init__(self, hosts: list[str], assume_yes: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.assume_yes = assume_yes
        self.interactive = self.stream.isatty() and sys.stdin.isatty()
        self.states = dict.fromkeys(hosts, "pending")
        self.steps = dict.fromkeys(hosts, "")
        self._lock = threading.Lock()
        self._console = Console(file=self.stream)
        self._live: Live | None = None

    def __enter__(self) -> TerminalReporter:
        if self.interactive:
            self._live = Live(self._table(), console=self._console, refresh_per_second=8)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def on_event(self, event: Event) -> None:
        with self._lock:
            self._track(event)
            line = event_line(event)
            if line is None or isinstance(event, RunFinished):
                return  # the caller prints the summary once the display is closed
            if self._live is not None and not isinstance(event, StepDone | HostDone):
                self._live.console.print(line, markup=False, highlight=False)
                self._live.update(self._table())
            elif self._live is not None:
                self._live.update(self._table())
            else:
                click.echo(line, file=self.stream)

    def _track(self, event: Event) -> None:
        if isinstance(event, StepDone):
            self.states[event.host] = "running"
            self.steps[event.host] = event.step
        elif isinstance(event, HostDone | HostRolledBack):
            state = (
                event.state.value
                if isinstance(event, HostDone)
                else ("rolled back" if event.ok else "rollback failed")
            )
            self.states[event.host] = state

    def _table(self) -> Table:
        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("host")
        table.add_column("state")
        table.add_column("last step")
        for host, state in self.states.items():
            table.add_row(host, Text(state, style=_STYLE.get(state, "")), self.steps[host])
        return table

    def approve(self, request: ApprovalNeeded) -> bool:
        """Ask on a terminal; otherwise approve only with --yes."""
        if self.assume_yes:
            return True
        if not self.interactive:
            click.echo(
                f"{request.reason}: needs a person; run with --yes to approve", file=self.stream
            )
            return False
        if self._live is not None:
            self._live.stop()
        try:
            return click.confirm(f"{request.reason}. Continue?", default=False)
        finally:
            if self._live is not None:
                self._live.start()
