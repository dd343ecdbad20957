"""Chat text -> Command (pure). The grammar is documented in docs/chatops.md and `help`.

    deploy <playbook> [to <group|hosts>] [key=value ...]
    plan <playbook> [to <group|hosts>] [key=value ...]
    approve | abort                      (in a deployment's thread)
    rollback [<deployment>]
    status | history [n] | census | roll call
    lock <env> [reason] [for <duration>] | unlock <env>
    self-update [ref]
    help [command]

Slack sends mentions and links as markup (`<@U123>`, `<http://x|x>`); values may be
quoted ("a b" or 'a b'). Values stay data: they are checked by the playbook's
variable declarations and reach a shell only quoted. Every problem is a `ParseError`.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from troupe.errors import InputError
from troupe.units import format_duration, parse_duration

MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
CHANNEL = re.compile(r"<#(C[A-Z0-9]+)(?:\|([^>]*))?>")
# Phones and rich editors turn quotes into curly ones; shlex only knows the straight ones.
_SMART_QUOTES = str.maketrans("\u201c\u201d\u2018\u2019", "\"\"''")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A deployment is named by its message ts, or by a link to the message (p + ts digits).
_TS = re.compile(r"^\d{9,10}\.\d{6}$")
_PERMALINK = re.compile(r"/p(\d{9,10})(\d{6})(?:[?#].*)?$")
HISTORY_MAX = 50
_ENV = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # an environment: a group or host name

USAGE = {
    "deploy": "deploy <playbook> [to <group|hosts>] [key=value ...]",
    "plan": "plan <playbook> [to <group|hosts>] [key=value ...]",
    "approve": "approve",
    "abort": "abort",
    "rollback": "rollback [<deployment>]",
    "status": "status",
    "history": "history [n]",
    "lock": "lock <env> [reason] [for <duration>]",
    "unlock": "unlock <env>",
    "roll call": "roll call",
    "census": "census",
    "self-update": "self-update [ref]",
    "help": "help [command]",
}
VERBS = tuple(USAGE)
# Verbs that change something, and so are subject to authorization (see troupe.auth).
ACTIONS = ("deploy", "approve", "abort", "rollback", "lock", "unlock", "self-update")


class ParseError(InputError):
    """The one error the parser raises: the text is not a valid command."""


class UnknownCommand(ParseError):
    """Not a command Troupe knows; carries a suggestion when one is close."""

    def __init__(self, word: str, suggestion: str | None) -> None:
        self.word = word
        self.suggestion = suggestion
        hint = f" Did you mean `{suggestion}`?" if suggestion else ""
        super().__init__(f"I don't know `{word}`.{hint} Try `help`.")


class BadArguments(ParseError):
    """A known command with arguments that do not fit its usage line."""

    def __init__(self, verb: str, problem: str) -> None:
        self.verb = verb
        super().__init__(f"{problem}. Usage: `{USAGE[verb]}`")


@dataclass(frozen=True)
class Command:
    verb: str
    playbook: str | None = None
    target: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    topic: str | None = None  # help <command>
    count: int | None = None  # history [n]
    env: str | None = None  # lock / unlock
    reason: str | None = None  # lock
    seconds: float | None = None  # lock ... for <duration>
    deployment: str | None = None  # rollback [<deployment>]: a message ts
    ref: str | None = None  # self-update [ref]

    @property
    def environment(self) -> str | None:
        """What authorization and locks key on: the environment (group) it touches."""
        return self.env or self.target


def addressed_to(text: str, bot_user_id: str, prefix: str | None = None) -> str | None:
    """The command part of `text` if it is for this bot (a mention, or the text prefix)."""
    stripped = text.strip()
    mention = re.match(rf"^<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[\s:,]*", stripped)
    if mention:
        return stripped[mention.end() :]
    if prefix and re.match(rf"{re.escape(prefix)}(?![\w-])", stripped, re.IGNORECASE):
        return stripped[len(prefix) :].lstrip(" :,")
    return None


def unmark(text: str) -> str:
    """Slack markup -> plain text: links to their URL, mentions to @ID, channels to #name."""
    text = LINK.sub(lambda m: m.group(1), text)
    text = CHANNEL.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = MENTION.sub(lambda m: "@" + m.group(1), text)
    # Slack escapes these three; smart quotes come from phones and rich editors.
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.translate(_SMART_QUOTES)


def parse(text: str) -> Command:
    """Parse the command part of a message (after the mention). Raises ParseError only."""
    try:
        words = shlex.split(unmark(text))
    except ValueError as exc:
        raise ParseError(f"I could not read that: {exc} (unbalanced quotes?)") from exc
    if not words:
        return Command("help")
    head = words[0].lower()
    if head == "roll" and len(words) > 1 and words[1].lower() == "call":
        return _no_arguments("roll call", words[2:])
    parser = _PARSERS.get(head)
    if parser is None:
        raise UnknownCommand(head, _suggest(" ".join(words[:2]).lower(), head))
    return parser(head, words[1:])


def _suggest(two_words: str, head: str) -> str | None:
    for candidate in (two_words, head):
        close = difflib.get_close_matches(candidate, VERBS, n=1, cutoff=0.6)
        if close:
            return close[0]
    return None


def _no_arguments(verb: str, rest: list[str]) -> Command:
    if rest:
        raise BadArguments(verb, f"`{verb}` takes no arguments")
    return Command(verb)


def _help(verb: str, rest: list[str]) -> Command:
    topic = " ".join(rest).lower() or None
    if topic is not None and topic not in USAGE:
        raise UnknownCommand(topic, _suggest(topic, topic))
    return Command("help", topic=topic)


def _run(verb: str, rest: list[str]) -> Command:
    """deploy / plan <playbook> [to <target>] [key=value ...]"""
    if not rest or "=" in rest[0] or rest[0].lower() == "to":
        raise BadArguments(verb, "name the playbook")
    playbook, args = rest[0], rest[1:]
    target = None
    if args and args[0].lower() == "to":
        if len(args) < 2 or "=" in args[1]:
            raise BadArguments(verb, "say where: `to <group|hosts>`")
        target, args = args[1], args[2:]
    variables: dict[str, str] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq or not _NAME.fullmatch(key):
            raise BadArguments(verb, f"`{arg}` is not key=value")
        variables[key] = value
    return Command(verb, playbook=playbook, target=target, variables=variables)


def _history(verb: str, rest: list[str]) -> Command:
    if len(rest) > 1 or (rest and not rest[0].isdigit()):
        raise BadArguments(verb, "give at most one number")
    count = int(rest[0]) if rest else 10
    if not 1 <= count <= HISTORY_MAX:
        raise BadArguments(verb, f"the number must be from 1 to {HISTORY_MAX}")
    return Command(verb, count=count)


def _lock(verb: str, rest: list[str]) -> Command:
    if not rest:
        raise BadArguments(verb, "name the environment to lock")
    env, words = _environment(verb, rest[0]), rest[1:]
    seconds = None
    if len(words) >= 2 and words[-2].lower() == "for":
        try:
            seconds = parse_duration(words[-1])
        except ValueError as exc:
            raise BadArguments(verb, f"`for {words[-1]}`: {exc}") from exc
        if seconds <= 0:
            raise BadArguments(verb, "a lock must last longer than 0s")
        words = words[:-2]
    return Command(verb, env=env, reason=" ".join(words) or None, seconds=seconds)


def _unlock(verb: str, rest: list[str]) -> Command:
    if len(rest) != 1:
        raise BadArguments(verb, "name one environment")
    return Command(verb, env=_environment(verb, rest[0]))


def _environment(verb: str, word: str) -> str:
    if not _ENV.fullmatch(word):
        raise BadArguments(verb, f"`{word}` is not an environment name (a group, e.g. `web`)")
    return word


def _rollback(verb: str, rest: list[str]) -> Command:
    if len(rest) > 1:
        raise BadArguments(verb, "name at most one deployment")
    if not rest or rest[0].lower() in ("last", "latest"):
        return Command(verb)
    return Command(verb, deployment=deployment_ts(rest[0]))


def deployment_ts(word: str) -> str:
    """A deployment is named by its command's ts, or a link to that message."""
    if _TS.match(word):
        return word
    link = _PERMALINK.search(word)
    if link is not None:
        return f"{link.group(1)}.{link.group(2)}"
    raise BadArguments("rollback", f"`{word}` is not a deployment (a message link or its ts)")


def _self_update(verb: str, rest: list[str]) -> Command:
    if len(rest) > 1:
        raise BadArguments(verb, "name at most one ref")
    return Command(verb, ref=rest[0] if rest else None)


def _simple(verb: str, rest: list[str]) -> Command:
    return _no_arguments(verb, rest)


_PARSERS: dict[str, Callable[[str, list[str]], Command]] = {
    "deploy": _run,
    "plan": _run,
    "approve": _simple,
    "abort": _simple,
    "rollback": _rollback,
    "status": _simple,
    "history": _history,
    "lock": _lock,
    "unlock": _unlock,
    "census": _simple,
    "self-update": _self_update,
    "help": _help,
}


def describe(command: Command) -> str:
    """A command as a person would type it (for history, refusals and the queue)."""
    c = command
    parts = [c.verb, c.playbook, c.env, c.reason and shlex.quote(c.reason), c.deployment, c.ref]
    if c.target:
        parts += ["to", c.target]
    parts += [f"{k}={shlex.quote(v)}" for k, v in c.variables.items()]
    if c.seconds is not None:
        parts += ["for", format_duration(c.seconds)]
    if c.count is not None:
        parts.append(str(c.count))
    return " ".join(p for p in parts if p)
