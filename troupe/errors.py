"""One exception tree for everything Troupe raises on purpose.

::

    TroupeError                      anything Troupe reports to a person
    ├── InputError                   bad input from a file, a flag or chat (exit code 2)
    │   ├── FileFormatError          a YAML/JSON file that does not validate (file, line, field)
    │   ├── TemplateProblem          a template in a playbook cannot render (templating)
    │   ├── ParseError               chat text that is not a command (commands)
    │   │   ├── UnknownCommand       ... with a suggestion ("did you mean deploy?")
    │   │   └── BadArguments         ... with the command's usage line
    │   └── Refused                  not allowed, or locked: answered with the reason (deployment)
    ├── SlackError                   a Slack Web API call failed (method, error code)
    │   └── RateLimited              HTTP 429; carries Retry-After
    ├── ClaimLost                    this replica no longer owns a command: touch nothing (claims)
    ├── HandOff                      shutting down mid-command: hand the claim over (deployment)
    ├── LocalSlackError              localslack could not start or serve (port in use, ...)
    ├── RemoteError                  a host could not be reached or used (host)
    │   ├── ConnectError             no SSH session (refused, auth, unreachable)
    │   └── CommandTimeout           a command ran past its timeout (host, command, timeout)
    ├── SelfUpdateError              fetch / verify / switch / probation of a checkout (selfupdate)
    ├── HealthServerError            the health endpoint could not start (health)
    ├── SandboxError                 `troupe sandbox` could not start (sandbox)
    └── FleetError                   a loopback sshd fleet could not start (sshfleet)

Errors carry their context as attributes so that the CLI and the chat replies
can say *where* something went wrong without parsing messages.
"""

from __future__ import annotations

from dataclasses import dataclass


class TroupeError(Exception):
    """Root of every error Troupe raises deliberately; its str() is fit for a person."""

    exit_code = 1


class InputError(TroupeError):
    """Input from a person (file, flag, chat) is wrong; nothing was changed."""

    exit_code = 2


@dataclass(frozen=True)
class FieldProblem:
    """One validation failure: where it is and what is wrong."""

    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.field or '(top level)'}: {self.message}"


class FileFormatError(InputError):
    """A file does not parse or validate; lists every problem with its field and line."""

    def __init__(self, path: str, problems: list[FieldProblem]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {path}: {p}" for p in problems)
        super().__init__(f"{path} is not valid:\n{lines}")


class SlackError(TroupeError):
    """A Slack Web API call returned ok=false or failed in transport."""

    def __init__(self, method: str, error: str) -> None:
        self.method = method
        self.error = error
        super().__init__(f"Slack {method} failed: {error}")


class RateLimited(SlackError):
    """Slack answered 429; the caller should wait `retry_after` seconds."""

    def __init__(self, method: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(method, "ratelimited")


class LocalSlackError(TroupeError):
    """localslack cannot start or serve as asked."""


class RemoteError(TroupeError):
    """Something went wrong talking to a host (not: a command that exited non-zero)."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"{host}: {message}")


class ConnectError(RemoteError):
    """The host could not be connected to (refused, unreachable, authentication failed)."""


class CommandTimeout(RemoteError):
    """A command ran longer than its timeout and was cut."""

    def __init__(self, host: str, command: str, timeout: float) -> None:
        self.command = command
        self.timeout = timeout
        super().__init__(host, f"timed out after {timeout:g}s")
