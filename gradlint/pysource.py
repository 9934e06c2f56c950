"""Static facts about the user's Python files, read with `ast` and never imported: which package a
file belongs to, what its imports resolve to, and which user files import which. Discovery and
`--affected` use it before torch is imported."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path


def package_root(path: Path) -> Path:
    """The folder that goes on sys.path to import `path` as a package module: walk up while the folder
    holds an `__init__.py` (pytest's rootdir-less "prepend" import mode)."""
    folder = path.resolve().parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        folder = folder.parent
    return folder


def module_name(path: Path) -> str:
    """The dotted name `path` is imported under: `models.net` for models/net.py inside package models."""
    path = path.resolve()
    rel = path.relative_to(package_root(path)).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=4096)
def parse(path: Path) -> ast.Module | None:
    """The file's syntax tree, or None when it cannot be read or parsed (the real import will say why)."""
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None


def _module_file(roots: Iterable[Path], dotted: str) -> Path | None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        return None
    for root in roots:
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate.resolve()
    return None


def _roots(path: Path) -> list[Path]:
    """Where an absolute import in `path` may find a user module: its package root and its own folder."""
    roots = [package_root(path), path.resolve().parent]
    return list(dict.fromkeys(roots))


def resolve_module(path: Path, module: str | None, level: int) -> Path | None:
    """The user file that `from <level dots><module> import ...` in `path` names, or None (not a user file)."""
    if level:
        base = path.resolve().parent
        for _ in range(level - 1):
            base = base.parent
        if not module:
            init = base / "__init__.py"
            return init.resolve() if init.is_file() else None
        return _module_file([base], module)
    return _module_file(_roots(path), module or "")


@dataclass(frozen=True)
class Imported:
    """One imported name: the user file it comes from (None: not a user file) and its name there."""

    file: Path | None
    attr: str | None  # None for `import pkg.mod` (the name is the module itself)
    qualified: str  # the dotted name, for names from outside the user's files ("torch.nn.Module")


def imported_names(path: Path) -> dict[str, Imported]:
    """Each module-level name bound by an import in `path`."""
    tree = parse(path)
    names: dict[str, Imported] = {}
    if tree is None:
        return names
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                target = alias.name if alias.asname else alias.name.split(".")[0]
                names[bound] = Imported(resolve_module(path, target, 0), None, target)
        elif isinstance(node, ast.ImportFrom):
            source = resolve_module(path, node.module, node.level)
            prefix = "." * node.level + (node.module or "")
            for alias in node.names:
                bound = alias.asname or alias.name
                sub = None
                if source is not None and source.name == "__init__.py":  # `from pkg import submodule`
                    sub = _module_file([source.parent], alias.name)
                if sub is not None:
                    names[bound] = Imported(sub, None, f"{prefix}.{alias.name}")
                else:
                    names[bound] = Imported(source, alias.name, f"{prefix}.{alias.name}" if node.module else alias.name)
    return names


def _ancestors_inits(path: Path) -> list[Path]:
    """The package `__init__.py` files Python runs before `path` (importing a.b.c runs a and a.b)."""
    found = []
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        init = (folder / "__init__.py").resolve()
        if init != path:
            found.append(init)
        folder = folder.parent
    return found


@lru_cache(maxsize=4096)
def direct_imports(path: Path) -> frozenset[Path]:
    """The user files `path` imports anywhere in its body (also inside functions: a factory's import
    runs when it is called), plus the package `__init__` files those imports execute."""
    tree = parse(path)
    found: set[Path] = set(_ancestors_inits(path))
    if tree is None:
        return frozenset(found)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                for depth in range(1, len(parts) + 1):
                    hit = resolve_module(path, ".".join(parts[:depth]), 0)
                    if hit is not None:
                        found.add(hit)
        elif isinstance(node, ast.ImportFrom):
            source = resolve_module(path, node.module, node.level)
            if source is None:
                continue
            found.add(source)
            found.update(_ancestors_inits(source))
            if source.name == "__init__.py":
                for alias in node.names:
                    sub = _module_file([source.parent], alias.name)
                    if sub is not None:
                        found.add(sub)
    found.discard(path.resolve())
    return frozenset(found)


@dataclass
class ImportGraph:
    """Which user files each file imports, transitively, over a set of starting files."""

    edges: dict[Path, frozenset[Path]] = field(default_factory=dict)

    def add(self, path: Path) -> None:
        stack = [path.resolve()]
        while stack:
            current = stack.pop()
            if current in self.edges:
                continue
            self.edges[current] = direct_imports(current)
            stack.extend(self.edges[current])

    def closure(self, path: Path) -> set[Path]:
        """`path` and every user file it imports, directly or not."""
        self.add(path)
        seen = {path.resolve()}
        stack = [path.resolve()]
        while stack:
            for nxt in self.edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen


def relative(path: Path, start: Path | None = None) -> str:
    """`path` relative to `start` (default: the working directory) when it lies below it, in `/` form."""
    absolute = path.resolve() if path.is_absolute() or start is None else (start / path).resolve()
    try:
        return absolute.relative_to((start or Path.cwd()).resolve()).as_posix()
    except ValueError:
        return os.fspath(absolute)
