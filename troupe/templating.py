"""Jinja2 in a sandbox with strict undefined variables (pure).

Commands are rendered so that every `{{ expression }}` reaches the shell quoted
(shlex.quote): a value given at run time — `-e version=...`, or chat later — is
data, never shell code. `1.0; touch pwned` becomes the single word
`'1.0; touch pwned'`. Plain values such as `2.4.1` or `/srv/app` need no quotes
and are left as they are, so commands stay readable.
"""

from __future__ import annotations

import functools
import shlex
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from troupe.errors import InputError


def _quote(value: Any) -> str:
    return shlex.quote(str(value))


_SHELL = SandboxedEnvironment(undefined=StrictUndefined, finalize=_quote, autoescape=False)
_TEXT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class TemplateProblem(InputError):
    """A template did not render (undefined variable, syntax error, sandbox refusal)."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}")


def render_command(template: str, context: dict[str, Any], where: str = "command") -> str:
    """A shell command with every expression's value shell-quoted."""
    return _render(_SHELL, template, context, where)


def render_text(template: str, context: dict[str, Any], where: str = "text") -> str:
    """Text that never reaches a shell (an HTTP check's URL, a message)."""
    return _render(_TEXT, template, context, where)


def evaluate(expression: str, context: dict[str, Any], where: str = "when") -> bool:
    """A `when:` condition such as `env == 'production'`."""
    try:
        return bool(_TEXT.compile_expression(expression, undefined_to_none=False)(**context))
    except _EVALUATION_ERRORS as exc:
        raise TemplateProblem(where, _explain(exc)) from exc


def _render(env: SandboxedEnvironment, template: str, context: dict[str, Any], where: str) -> str:
    try:
        return _compiled(env, template).render(**context)
    except _EVALUATION_ERRORS as exc:
        raise TemplateProblem(where, _explain(exc)) from exc


# What an expression can raise besides Jinja's own errors: `{{ 1 // n }}` with n=0,
# `{{ range(10**9) }}` refused by the sandbox (OverflowError), `{{ x|int + "a" }}`, ...
_EVALUATION_ERRORS = (TemplateError, ArithmeticError, ValueError, TypeError, LookupError)


@functools.lru_cache(maxsize=2048)
def _compiled(env: SandboxedEnvironment, template: str) -> Template:
    """Each task's template is compiled once, not once per host."""
    return env.from_string(template)


def _explain(exc: Exception) -> str:
    if isinstance(exc, TemplateError):
        return exc.message or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
