"""Chat text -> Command (pure). The grammar is small and documented in `help`.

    @troupe deploy <playbook> [to <group|hosts>] [key=value ...]
    @troupe roll call
    @troupe status
    @troupe help [command]

Slack sends mentions and links as markup (`<@U123>`, `<http://x|x>`); values may be
quoted ("a b" or 'a b'). Values stay data: they are checked by the playbook's
variable declarations and reach a shell only quoted.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field

from troupe.errors import InputError

MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
CHANNEL = re.compile(r"<#(C[A-Z0-9]+)(?:\|([^>]*))?>")
# Phones and rich editors turn quotes into curly ones; shlex only knows the straight ones.
_SMART_QUOTES = str.maketrans("\u201c\u201d\u2018\u2019", "\"\"''")
VERBS = ("deploy", "roll call", "status", "help")
USAGE = {
    "deploy": "deploy <playbook> [to <group|hosts>] [key=value ...]",
    "roll call": "roll call",
    "status": "status",
    "help": "help [command]",
}


class UnknownCommand(InputError):
    """Not a command Troupe knows; carries a suggestion when one is close."""

    def __init__(self, word: str, suggestion: str | None) -> None:
        self.word = word
        self.suggestion = suggestion
        hint = f" Did you mean `{suggestion}`?" if suggestion else ""
        super().__init__(f"I don't know `{word}`.{hint}")


class BadArguments(InputError):
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
    topic: str | None = None  # for `help <command>`


def addressed_to(text: str, bot_user_id: str, prefix: str | None = None) -> str | None:
    """The command part of `text` if it is for this bot (a mention, or the text prefix)."""
    stripped = text.strip()
    mention = re.match(rf"^<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[\s:,]*", stripped)
    if mention:
        return stripped[mention.end() :]
    if prefix and stripped.lower().startswith(prefix.lower()):
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
    """Parse the command part of a message (after the mention)."""
    try:
        words = shlex.split(unmark(text))
    except ValueError as exc:
        raise InputError(f"I could not read that: {exc} (unbalanced quotes?)") from exc
    if not words:
        return Command("help")
    head = words[0].lower()
    if head == "roll" and len(words) > 1 and words[1].lower() == "call":
        return _no_arguments("roll call", words[2:])
    if head == "deploy":
        return _deploy(words[1:])
    if head in ("status", "help"):
        return _help(words[1:]) if head == "help" else _no_arguments("status", words[1:])
    raise UnknownCommand(head, _suggest(" ".join(words[:2]).lower(), head))


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


def _help(rest: list[str]) -> Command:
    topic = " ".join(rest).lower() or None
    if topic is not None and topic not in USAGE:
        raise UnknownCommand(topic, _suggest(topic, topic))
    return Command("help", topic=topic)


def _deploy(rest: list[str]) -> Command:
    if not rest or "=" in rest[0]:
        raise BadArguments("deploy", "name the playbook to deploy")
    playbook, args = rest[0], rest[1:]
    target = None
    if len(args) >= 2 and args[0].lower() == "to":
        target, args = args[1], args[2:]
    variables: dict[str, str] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise BadArguments("deploy", f"`{arg}` is not key=value")
        variables[key] = value
    return Command("deploy", playbook=playbook, target=target, variables=variables)
