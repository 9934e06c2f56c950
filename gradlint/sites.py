"""Where the layers of a model that was built before gradlint saw it (`gradlint.check(model)` in a notebook or a
script) were constructed, read from the source with `ast`: nothing of the user's runs again, nothing is patched.

A file target is built under gradlint.recorder, which sees each constructor run; an instance arrives built,
so its construction lines are found in the source that built it instead: a user class's own body (`self.fc =
nn.Linear(...)`, or the one `nn.Linear(` call of a loop that fills a Sequential), the arguments of a container
call (`nn.Sequential(nn.Linear(...), nn.Sigmoid())`, element i for child i), a factory function's body, and for
the model itself the assignment in the notebook cell or script that called `gradlint.check`. Where the source
leaves a choice (two `nn.Linear(` lines that could have built a layer) no site is given rather than a guess:
the finding then points at the forward line, as before."""

from __future__ import annotations

import ast
import inspect
import linecache
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from types import FrameType, FunctionType, ModuleType
from typing import Any

from torch import nn

from gradlint.recorder import ConstructionRecord
from gradlint.sources import is_user_file, location

_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict")
_Scope = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class _Where:
    """A piece of user source: the syntax tree of a class, function or cell, its file and its globals."""

    tree: _Scope
    filename: str
    namespace: dict[str, Any]


@dataclass(frozen=True)
class _Site:
    call: ast.Call
    where: _Where


def construction_record(model: nn.Module, caller: FrameType | None) -> ConstructionRecord:
    """The construction sites of `model`'s modules that its source determines, as a recorder would have
    them; `caller` is the frame that called `gradlint.check` (where the model itself may have been built)."""
    record = ConstructionRecord()
    cls: type = type(model)
    own = None if _class_sources(cls) else _root_site(model, caller)
    _walk(model, own, record, set())
    return record


def _walk(module: nn.Module, own: _Site | None, record: ConstructionRecord, seen: set[int]) -> None:
    if id(module) in seen:
        return
    seen.add(id(module))
    if own is not None:
        record.sites[module] = location(own.where.filename, own.call.lineno)
    cls: type = type(module)
    classes = _class_sources(cls)
    for name, child in module.named_children():
        found: _Site | None = None
        if own is not None and not classes:  # a container built by `own`: its arguments are its children
            expr = _element(own.call, name)
            if isinstance(expr, ast.Call):
                found = _Site(expr, own.where)
        for where in classes:
            if found is not None:
                break
            value = _assigned(where.tree, name)
            if isinstance(value, ast.Call):
                found = _Site(value, where)
        if found is None:
            if classes:
                found = _by_type(classes, child, lambda attr, name=name: attr != name)
            elif own is not None and _builds(own.call, module):
                helpers = _starred_helpers(own)  # nn.Sequential(*make_layers()): built in make_layers
                found = _by_type(helpers, child, lambda attr: False) if helpers else None
                if found is None:
                    inside = _enclosing_assignment(own.where.tree, own.call)
                    found = _by_type([own.where], child, lambda attr, inside=inside: attr != inside, own.call)
        _walk(child, _through_factory(found, child), record, seen)


# -- the model itself: the line in the caller's cell or script that built it --------------------------------


def _root_site(model: nn.Module, caller: FrameType | None) -> _Site | None:
    if caller is None:
        return None
    names = {n for n, v in caller.f_locals.items() if v is model}
    if caller.f_locals is not caller.f_globals:
        names |= {n for n, v in caller.f_globals.items() if v is model}
    namespace = caller.f_globals
    files = [caller.f_code.co_filename, *_cells_newest_first(caller.f_code.co_filename)]
    for index, filename in enumerate(files):
        tree = _parsed(filename)
        if tree is None or not is_user_file(filename):
            continue
        limit = caller.f_lineno if index == 0 else None
        search: ast.AST = _caller_function(tree, caller) if index == 0 else tree
        best: ast.Call | None = None
        for node in ast.walk(search):
            if index == 0 and isinstance(node, ast.Call) and node.lineno == caller.f_lineno and node.args \
                    and _callee(node) == "check" and isinstance(node.args[0], ast.Call):
                best = node.args[0]  # gradlint.check(nn.Sequential(...))
                break
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call) \
                    and (limit is None or node.lineno <= limit) \
                    and any(isinstance(t, ast.Name) and t.id in names for t in _targets(node)):
                if best is None or node.lineno > best.lineno:
                    best = node.value
        if best is not None:
            where = _Where(_innermost(tree, best), filename, namespace)
            return _through_factory(_Site(best, where), model)
    return None


def _caller_function(tree: ast.Module, caller: FrameType) -> ast.AST:
    """The function that called `gradlint.check` (its local model was built in it), or the whole file or cell."""
    first = caller.f_code.co_firstlineno
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == caller.f_code.co_name \
                and first in (node.lineno, *(d.lineno for d in node.decorator_list)):
            return node
    return tree


def _cells_newest_first(current: str) -> list[str]:
    """The other cells IPython compiled, the most recently run first (a model built in an earlier cell)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)() if "IPython" in sys.modules else None
    counts: dict[str, int] = dict(getattr(getattr(shell, "compile", None), "_filename_map", {}) or {})
    return [f for f, _ in sorted(counts.items(), key=lambda kv: -kv[1]) if f != current]


# -- reading the source ---------------------------------------------------------------------------------------


def _parsed(filename: str) -> ast.Module | None:
    text = "".join(linecache.getlines(filename))
    return _parse(filename, text) if text else None


@lru_cache(maxsize=256)
def _parse(filename: str, text: str) -> ast.Module | None:
    try:
        return ast.parse(text, filename=filename)
    except (SyntaxError, ValueError):
        return None


@lru_cache(maxsize=1024)
def _class_sources(cls: type) -> tuple[_Where, ...]:
    """The class bodies of `cls` and its user base classes, found from their methods' code objects (which
    name the notebook cell too, where `inspect.getsource(cls)` fails)."""
    found = []
    for klass in cls.__mro__:
        if klass is nn.Module or not issubclass(klass, nn.Module):
            continue
        where = _class_source(klass)
        if where is not None:
            found.append(where)
    return tuple(found)


def _class_source(klass: type) -> _Where | None:
    for value in vars(klass).values():
        fn = getattr(value, "__func__", value)
        if not isinstance(fn, FunctionType) or not is_user_file(fn.__code__.co_filename):
            continue
        tree = _parsed(fn.__code__.co_filename)
        if tree is None:
            return None
        first = fn.__code__.co_firstlineno
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == klass.__name__ and any(
                    isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == fn.__name__
                    and first in (f.lineno, *(d.lineno for d in f.decorator_list)) for f in node.body):
                return _Where(node, fn.__code__.co_filename, fn.__globals__)
        return None
    try:  # a class without methods of its own: found by name, in a file
        path = inspect.getsourcefile(klass)
        _, line = inspect.getsourcelines(klass)
    except (OSError, TypeError):
        return None
    tree = _parsed(path) if path and is_user_file(path) else None
    module = sys.modules.get(klass.__module__)
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.ClassDef) and node.lineno == line:
            return _Where(node, path or "", vars(module) if isinstance(module, ModuleType) else {})
    return None


def _callee(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return list(node.targets) if isinstance(node, ast.Assign) else [node.target]


def _self_attr(target: ast.expr) -> str | None:
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
        return target.attr
    return None


def _assignments(tree: _Scope) -> Iterator[tuple[str, ast.expr]]:
    """`self.X = value`, `self.X: T = value` and `self.add_module("X", value)` in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            for target in _targets(node):
                attr = _self_attr(target)
                if attr is not None:
                    yield attr, node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("add_module", "register_module") and _self_attr(node.func) is None \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "self" and len(node.args) == 2 \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            yield node.args[0].value, node.args[1]


def _assigned(tree: _Scope, name: str) -> ast.expr | None:
    values = [value for attr, value in _assignments(tree) if attr == name]
    calls = {v.lineno for v in values if isinstance(v, ast.Call)}
    return next((v for v in values if isinstance(v, ast.Call)), None) if len(calls) == 1 and len(values) == len(calls) else None


def _enclosing_assignment(tree: _Scope, call: ast.Call) -> str | None:
    """The attribute `call` is (part of) the value of, when it is assigned to `self.<attr>`."""
    for attr, value in _assignments(tree):
        if any(node is call for node in ast.walk(value)):
            return attr
    return None


def _builds(call: ast.Call, module: nn.Module) -> bool:
    """Whether `call` names the module's own class (or a base of it), not a factory."""
    name = _callee(call)
    return name is not None and any(k.__name__ == name for k in type(module).__mro__)


def _element(call: ast.Call, child: str) -> ast.expr | None:
    """The argument of a container call that built child `child`: positional for Sequential and ModuleList
    (up to the first `*args`; a comprehension's element for all of its children), by key for dicts."""
    if _callee(call) not in _CONTAINERS or not call.args:
        return None
    items: list[ast.expr] = list(call.args)
    if len(items) == 1 and isinstance(items[0], (ast.List, ast.Tuple)):  # ModuleList([...])
        items = list(items[0].elts)
    if len(items) == 1 and isinstance(items[0], (ast.ListComp, ast.GeneratorExp)):
        return items[0].elt
    if len(items) == 1 and isinstance(items[0], ast.Dict):  # ModuleDict({...})
        for key, value in zip(items[0].keys, items[0].values):
            if isinstance(key, ast.Constant) and key.value == child:
                return value
        return None
    if not child.isdigit():
        return None
    index = int(child)
    for position, item in enumerate(items):
        if isinstance(item, ast.Starred):
            inner = item.value
            return inner.elt if isinstance(inner, (ast.ListComp, ast.GeneratorExp)) else None
        if position == index:
            return item
    return None


def _by_type(places: list[_Where] | tuple[_Where, ...], child: nn.Module, excluded: Any,
             own: ast.Call | None = None) -> _Site | None:
    """The one line in `places` that calls the child's class (a layer appended in a loop), ignoring calls
    assigned to other attributes (`excluded(attr)`); None when no line or several could have built it."""
    name = type(child).__name__
    hits: list[_Site] = []
    for where in places:
        skip = {id(node) for attr, value in _assignments(where.tree) if excluded(attr) for node in ast.walk(value)}
        hits.extend(_Site(node, where) for node in ast.walk(where.tree)
                    if isinstance(node, ast.Call) and node is not own and id(node) not in skip and _callee(node) == name)
    lines = {(h.where.filename, h.call.lineno) for h in hits}
    return hits[0] if len(lines) == 1 else None


def _function_source(call: ast.Call, where: _Where) -> _Where | None:
    """The body of the user function `call` calls by name (`make_block(...)`), looked up in `where`'s globals
    (a plain dictionary read: no attribute of the user's objects is evaluated)."""
    if not isinstance(call.func, ast.Name):
        return None
    fn = where.namespace.get(call.func.id)
    if not isinstance(fn, FunctionType) or not is_user_file(fn.__code__.co_filename):
        return None
    tree = _parsed(fn.__code__.co_filename)
    first = fn.__code__.co_firstlineno
    body = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name == fn.__name__ and first in (n.lineno, *(d.lineno for d in n.decorator_list))),
                None) if tree is not None else None
    return _Where(body, fn.__code__.co_filename, fn.__globals__) if body is not None else None


def _starred_helpers(own: _Site) -> list[_Where]:
    """The user functions whose results a container call unpacks: `nn.Sequential(*make_layers(...))`."""
    found = []
    for arg in own.call.args:
        if isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Call):
            where = _function_source(arg.value, own.where)
            if where is not None:
                found.append(where)
    return found


def _through_factory(site: _Site | None, module: nn.Module) -> _Site | None:
    """`make_block(...)` built the module: the one call of its class inside that user function."""
    if site is None or _builds(site.call, module):
        return site
    body = _function_source(site.call, site.where)
    if body is None:
        return site
    inner = _by_type([body], module, lambda attr: False)
    return inner or site


def _innermost(tree: ast.Module, call: ast.Call) -> _Scope:
    """The function (or the whole file or cell) whose body holds `call`: where its children were made."""
    best: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.lineno <= call.lineno <= (node.end_lineno or 0):
            if best is None or node.lineno >= best.lineno:
                best = node
    return best if best is not None else tree
