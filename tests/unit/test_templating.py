"""troupe.templating: sandboxed Jinja2, strict undefined, every value shell-quoted."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from troupe.errors import InputError
from troupe.templating import TemplateProblem, evaluate, render_command, render_text

HOST = {"name": "web1", "address": "10.0.0.11", "port": 22, "vars": {"port": 8080}}

# ---- quoting -----------------------------------------------------------------------------


def test_a_value_with_shell_syntax_becomes_one_quoted_word() -> None:
    command = render_command("echo {{ version }}", {"version": "1.0; touch pwned"})

    assert command == "echo '1.0; touch pwned'"
    assert shlex.split(command) == ["echo", "1.0; touch pwned"]


@pytest.mark.parametrize(
    "value",
    [
        "1.0; touch pwned",
        "$(touch pwned)",
        "`touch pwned`",
        "a && touch pwned",
        "a | touch pwned",
        "a\ntouch pwned",
        "it's; touch pwned",
        '"; touch pwned; "',
        "*",
        "~root",
        "a b  c",
        "",
        "${IFS}touch${IFS}pwned",
    ],
)
def test_hostile_values_reach_the_shell_as_data(value: str) -> None:
    command = render_command("printf %s {{ value }} done", {"value": value})

    # shlex splits words as a POSIX shell does; single quotes allow no expansion at all.
    assert shlex.split(command) == ["printf", "%s", value, "done"]
    assert command.startswith("printf %s '")


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("2.4.1", "2.4.1"),
        ("/srv/app/current", "/srv/app/current"),
        ("web-1.example.com", "web-1.example.com"),
        ("key=value", "key=value"),
        (8080, "8080"),
        (True, "True"),
    ],
)
def test_plain_values_are_left_unquoted(value: object, rendered: str) -> None:
    assert render_command("deploy {{ v }}", {"v": value}) == f"deploy {rendered}"


def test_only_expressions_are_quoted_not_the_template_text() -> None:
    command = render_command(
        "tar -xzf /srv/dist/app-{{ version }}.tgz -C /srv/app && echo 'done; ok'",
        {"version": "2.4 rc1"},
    )

    assert command == "tar -xzf /srv/dist/app-'2.4 rc1'.tgz -C /srv/app && echo 'done; ok'"
    assert shlex.split(command)[2] == "/srv/dist/app-2.4 rc1.tgz"  # still one word


def test_each_expression_is_quoted_as_a_whole() -> None:
    command = render_command('echo {{ "release " ~ version }}', {"version": "2.4.1"})

    assert command == "echo 'release 2.4.1'"


def test_values_in_loops_are_quoted_one_by_one() -> None:
    command = render_command(
        "{% for f in files %}rm {{ f }}; {% endfor %}", {"files": ["a b", "c"]}
    )

    assert command == "rm 'a b'; rm c; "


def test_quoting_inside_quotes_keeps_the_quote_characters() -> None:
    # Expressions must not be quoted again by the author: the quotes become part of the word.
    command = render_command('echo "{{ msg }}"', {"msg": "hello world"})

    assert command == "echo \"'hello world'\""
    assert shlex.split(command) == ["echo", "'hello world'"]


def test_filters_and_host_view() -> None:
    context = {"host": HOST, "version": "v2"}

    command = render_command(
        "curl http://{{ host.address }}:{{ host.vars.port }}/{{ version | upper }}", context
    )

    assert command == "curl http://10.0.0.11:8080/V2"


def test_render_text_does_not_quote() -> None:
    url = render_text("http://{{ host.address }}:8080/{{ path }}", {"host": HOST, "path": "a b"})

    assert url == "http://10.0.0.11:8080/a b"


# ---- strict undefined and errors ---------------------------------------------------------


def test_undefined_variable_is_a_template_problem_naming_where() -> None:
    with pytest.raises(TemplateProblem) as caught:
        render_command("echo {{ versoin }}", {"version": "2.4.1"}, where="unpack release")

    problem = caught.value
    assert isinstance(problem, InputError)
    assert problem.where == "unpack release"
    assert str(problem) == "unpack release: 'versoin' is undefined"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("echo {{ host.nope }}", "has no attribute 'nope'"),
        ("echo {{ previous.version }}", "'previous' is undefined"),
        ("echo {{ items[3] }}", "no element 3"),
        ("echo {{ version", "unexpected end of template"),
        ("echo {% if %}", "Expected an expression"),
        ("echo {{ version | nosuchfilter }}", "No filter named 'nosuchfilter'"),
    ],
)
def test_broken_templates_are_template_problems(template: str, message: str) -> None:
    context = {"host": HOST, "version": "1", "items": ["a"]}

    with pytest.raises(TemplateProblem, match=message) as caught:
        render_command(template, context, where="task 2")

    assert str(caught.value).startswith("task 2: ")


def test_render_text_is_strict_too() -> None:
    with pytest.raises(TemplateProblem, match="'port' is undefined") as caught:
        render_text("http://h:{{ port }}/", {}, where="check http_ok")

    assert caught.value.where == "check http_ok"


def test_default_where() -> None:
    with pytest.raises(TemplateProblem, match=r"^command: "):
        render_command("{{ x }}", {})
    with pytest.raises(TemplateProblem, match=r"^text: "):
        render_text("{{ x }}", {})


# ---- the sandbox ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ version.__class__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ host.__class__.__base__ }}",
    ],
)
def test_the_sandbox_refuses_internals(template: str) -> None:
    with pytest.raises(TemplateProblem, match="unsafe"):
        render_command(template, {"version": "1", "host": HOST}, where="task")


def test_the_sandbox_refuses_internals_in_text_and_conditions() -> None:
    with pytest.raises(TemplateProblem, match="unsafe"):
        render_text("{{ ''.__class__.__mro__ }}", {})
    with pytest.raises(TemplateProblem, match="unsafe"):
        evaluate("''.__class__.__mro__", {})


@pytest.mark.parametrize(
    ("render", "template", "context"),
    [
        ("command", "echo {{ 100 // (n | int) }}", {"n": "0"}),
        ("command", "echo {{ range(1000000) | length }}", {}),
        ("when", "100 / (n | int) > 1", {"n": "0"}),
    ],
)
def test_runtime_errors_in_expressions_are_template_problems(
    render: str, template: str, context: dict[str, Any]
) -> None:
    with pytest.raises(TemplateProblem):
        if render == "when":
            evaluate(template, context)
        else:
            render_command(template, context)


# ---- when ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "context", "expected"),
    [
        ("env == 'production'", {"env": "production"}, True),
        ("env == 'production'", {"env": "staging"}, False),
        ("env != 'production'", {"env": "staging"}, True),
        ("host.name in ['web1', 'web2']", {"host": HOST}, True),
        ("host.vars.port == 8080", {"host": HOST}, True),
        ("n | int > 2", {"n": "3"}, True),
        ("version.startswith('2.')", {"version": "2.4.1"}, True),
        ("previous.version != version", {"previous": {"version": "1"}, "version": "2"}, True),
        ("flag", {"flag": False}, False),
        ("flag", {"flag": "false"}, True),  # -e flag=false is the (truthy) string "false"
        ("''", {}, False),
    ],
)
def test_evaluate(expression: str, context: dict[str, Any], expected: bool) -> None:
    assert evaluate(expression, context) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("env == 'production'", "'env' is undefined"),
        ("missing", "'missing' is undefined"),
        ("env = 'production'", "chunk after expression"),
        ("{{ env }}", "expected token"),
    ],
)
def test_evaluate_problems_name_where(expression: str, message: str) -> None:
    with pytest.raises(TemplateProblem, match=message) as caught:
        evaluate(expression, {}, where="restart: when")

    assert caught.value.where == "restart: when"
    assert str(caught.value).startswith("restart: when: ")
