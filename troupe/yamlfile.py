"""Load a YAML file into a pydantic model, with errors that name file, line and field.

Pure apart from reading the file: every config-like file in Troupe (workspace,
troupe.yaml, playbooks) goes through :func:`load_model`, so they all report
problems the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from troupe.errors import FieldProblem, FileFormatError

M = TypeVar("M", bound=BaseModel)
# libyaml's loader when PyYAML was built with it: the same safe subset, ~10x faster.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Loc = tuple[int | str, ...]


def load_model(path: str | Path, model: type[M]) -> M:
    """Read `path` and validate it as `model`; raise FileFormatError on any problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        problem = FieldProblem("", f"cannot read file ({exc.strerror})")
        raise FileFormatError(name, [problem]) from exc
    except UnicodeDecodeError as exc:
        problem = FieldProblem("", f"not UTF-8 text (byte {exc.start})")
        raise FileFormatError(name, [problem]) from exc
    return parse_model(text, model, name)


def parse_model(text: str, model: type[M], name: str = "<string>") -> M:
    """Validate YAML `text` as `model`; `name` is used in error messages."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - _LOADER is a safe loader
    except yaml.YAMLError as exc:
        raise FileFormatError(name, [_yaml_problem(exc)]) from exc
    if not isinstance(data, dict):
        raise FileFormatError(name, [FieldProblem("", "expected a mapping at the top level")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FileFormatError(name, _problems(exc, node)) from exc


def _yaml_problem(exc: yaml.YAMLError) -> FieldProblem:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    return FieldProblem("", f"not valid YAML ({problem})", line)


class Within(ValueError):
    """Raised by a validator of a whole field to point at one entry inside it, e.g.
    `Within(("web",), "group 'web' lists unknown hosts")` from the `groups` validator."""

    def __init__(self, path: Loc, message: str) -> None:
        super().__init__(message)
        self.path = path


def _problems(exc: ValidationError, root: yaml.Node | None) -> list[FieldProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        inner = err.get("ctx", {}).get("error")
        deeper = inner.path if isinstance(inner, Within) else ()
        loc = tuple(p for p in (*err["loc"], *deeper) if not _is_union_tag(p))
        problems.append(FieldProblem(dotted(loc), _message(err), line_of(root, loc)))
    return _most_specific(problems)


_SCALAR_TAGS = {"int", "str", "float", "bool", "none", "list", "dict"}


def _is_union_tag(part: int | str) -> bool:
    """pydantic names the member of a union it tried in the error location: a scalar type,
    `literal['socket']`, `function-before[...]`, or a model's class name. Those are not
    fields; host names or dict keys such as `web2.example.com` are."""
    if not isinstance(part, str):
        return False
    if part in _SCALAR_TAGS or part.startswith(("literal[", "function-", "list[", "dict[")):
        return True
    return part in _model_names()


def _model_names() -> frozenset[str]:
    names: set[str] = set()
    todo = list(BaseModel.__subclasses__())
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return frozenset(names)


def _most_specific(problems: list[FieldProblem]) -> list[FieldProblem]:
    """For a union, pydantic reports every member that failed; the member that got deepest
    into the value is the one the author meant, so drop errors on its parents."""
    fields = {p.field for p in problems}
    deeper = {f for f in fields for g in fields if g != f and g.startswith((f + ".", f + "["))}
    kept = [p for p in problems if p.field not in deeper]
    return list(dict.fromkeys(kept))


def _message(err: Any) -> str:
    msg = str(err["msg"])
    # pydantic prefixes errors raised by our own validators; the prefix means nothing to a user.
    return msg.removeprefix("Value error, ")


def dotted(loc: Loc) -> str:
    """('apps', 0, 'bot_token') -> 'apps[0].bot_token'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def line_of(root: yaml.Node | None, loc: Loc) -> int | None:
    """The 1-based line of the deepest node along `loc` (the parent if the key is missing)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        node = _child(node, part)
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _child(node: yaml.Node | None, part: int | str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return value  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]  # type: ignore[no-any-return]
    return None
