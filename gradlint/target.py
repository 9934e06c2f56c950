"""Target syntax: `FILE.py:NAME`, `pkg.module:NAME`, optionally `NAME(literal args)`."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from gradlint.types import ErrorKind, GradlintError


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target string. Arguments are Python literals only: nothing is evaluated."""

    raw: str
    location: str  # a file path ending in .py, or a dotted module name
    name: str  # attribute path inside the module, e.g. "Net" or "models.Net"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    called: bool = False

    @property
    def is_file(self) -> bool:
        return self.location.endswith(".py")


def parse_target(raw: str) -> TargetSpec:
    """Split a target string into location, name and literal call arguments."""
    text = raw.strip()
    paren = text.find("(")
    head = text if paren < 0 else text[:paren]
    location, sep, name_head = head.rpartition(":")
    if not sep or not location or not name_head.strip():
        raise GradlintError(
            ErrorKind.LOAD,
            f"Target {raw!r} is not of the form FILE.py:NAME or package.module:NAME. "
            "Give the file (or dotted module) and the name of an nn.Module class, factory function "
            "or instance, separated by a colon, e.g. `models/net.py:Net(depth=20)`.",
        )
    expr = name_head.strip() + ("" if paren < 0 else text[paren:])
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise GradlintError(
            ErrorKind.LOAD,
            f"Target {raw!r}: cannot parse {expr!r} ({exc.msg}). Write NAME or NAME(arg, key=value) "
            "with Python literal arguments.",
        ) from None
    called = isinstance(tree, ast.Call)
    func = tree.func if isinstance(tree, ast.Call) else tree
    name = _dotted_name(func, raw)
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if isinstance(tree, ast.Call):
        try:
            args = tuple(ast.literal_eval(a) for a in tree.args)
            kwargs = {k.arg: ast.literal_eval(k.value) for k in tree.keywords if k.arg}
        except ValueError:
            raise GradlintError(
                ErrorKind.LOAD,
                f"Target {raw!r}: call arguments must be Python literals (numbers, strings, "
                "tuples, lists, dicts, True/False/None); gradlint never evaluates expressions.",
            ) from None
        if any(k.arg is None for k in tree.keywords):
            raise GradlintError(ErrorKind.LOAD, f"Target {raw!r}: `**kwargs` is not allowed in a target.")
    return TargetSpec(raw=raw, location=location.strip(), name=name, args=args, kwargs=kwargs, called=called)


def _dotted_name(node: ast.expr, raw: str) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted_name(node.value, raw)}.{node.attr}"
    raise GradlintError(ErrorKind.LOAD, f"Target {raw!r}: the part after ':' must be a name, optionally called.")
