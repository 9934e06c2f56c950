"""Paths as targets: `gradlint check models/`, `models/mlp.py` or `.` find the nn.Module subclasses and
module-returning factories a file defines (not ones it imports) that can be built without arguments.

Finding them is static (`ast`, no import, no torch): a class whose base is a torch module class or a user
class that is one, a function annotated to return a module or returning a call of one. The real check then
confirms: a discovered definition that cannot be built or fed after all is listed as skipped, with why,
instead of failing the run."""

from __future__ import annotations

import ast
import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from gradlint.pysource import ImportGraph, Imported, imported_names, parse, relative
from gradlint.types import ErrorKind

# Folders no one means when they say "check ." (ruff's default excludes, plus caches).
SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", ".bzr", "__pycache__", ".venv", "venv", ".env", "env", "build", "dist", "node_modules",
    ".tox", ".nox", ".eggs", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", "site-packages",
    "__pypackages__", "_build", "buck-out",
})

_TORCH_PREFIXES = ("torch.nn.",)


@dataclass(frozen=True)
class Skipped:
    """A definition discovery found but does not check, and why."""

    target: str
    reason: str


@dataclass
class Discovery:
    """What a list of command-line targets expands to."""

    targets: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    discovered: set[str] = field(default_factory=set)  # targets found by discovery (not named by the user)
    paths_given: bool = False
    broken: list[tuple[str, str]] = field(default_factory=list)  # (file, why it cannot be read)


def is_path_target(raw: str) -> bool:
    """A file or folder rather than `FILE.py:NAME` / `pkg.mod:NAME`: it exists, or it has no colon."""
    text = raw.strip()
    if os.path.exists(text):
        return True
    _drive, rest = os.path.splitdrive(text)
    return ":" not in rest and "(" not in rest


def python_files(path: Path, exclude: Sequence[str] = (), base: Path | None = None) -> list[Path]:
    """The `.py` files at `path` (a file, or a folder walked in sorted order), without excluded ones."""
    base = base or Path.cwd()
    if path.is_file():
        return [] if excluded(path, exclude, base) else [path]
    found: list[Path] = []
    for folder, dirs, files in os.walk(path):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")
                         and not (here / d / "pyvenv.cfg").exists() and not excluded(here / d, exclude, base))
        found.extend(here / f for f in sorted(files) if f.endswith(".py") and not excluded(here / f, exclude, base))
    return found


def excluded(path: Path, patterns: Sequence[str], base: Path) -> bool:
    """ruff's matching: a pattern matches the path relative to `base` (the configuration's folder), or
    any one of its components (`exclude = ["experiments"]` drops every folder of that name)."""
    if not patterns:
        return False
    rel = relative(path, base)
    parts = Path(rel).parts
    for pattern in patterns:
        pat = pattern.rstrip("/")
        if fnmatch.fnmatchcase(rel, pat) or fnmatch.fnmatchcase(rel, pat + "/*") or any(fnmatch.fnmatchcase(p, pat) for p in parts):
            return True
    return False


# -- what a file defines -------------------------------------------------------------------------------


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    if isinstance(node, ast.Subscript):  # Generic[...]-style bases
        return _dotted(node.value)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "nn.Module" annotations
        return node.value
    return None


@dataclass(frozen=True)
class _Class:
    node: ast.ClassDef
    bases: tuple[str, ...]


def _torch_module_name(qualified: str) -> bool:
    """A torch module class (torch.nn.Module, nn.Sequential, ...) or Lightning's LightningModule."""
    last = qualified.rsplit(".", 1)[-1]
    if qualified.startswith(_TORCH_PREFIXES) and last[:1].isupper():
        return qualified.count(".") == 2 or qualified.startswith("torch.nn.modules.")
    return last == "LightningModule" and qualified.split(".", maxsplit=1)[0] in ("lightning", "pytorch_lightning")


def _qualify(name: str, imports: dict[str, Imported]) -> tuple[str, Imported | None]:
    """`nn.Module` -> ("torch.nn.Module", None); a name imported from a user file -> (name, its Imported)."""
    head, _, rest = name.partition(".")
    imp = imports.get(head)
    if imp is None:
        return name, None
    if imp.file is not None:
        if imp.attr is not None and not rest:
            return name, imp
        if imp.attr is None and rest and "." not in rest:  # `blocks.Block` after `from . import blocks`
            return name, Imported(imp.file, rest, f"{imp.qualified}.{rest}")
        return name, None
    return (imp.qualified + ("." + rest if rest else "")), None


@lru_cache(maxsize=2048)
def module_classes(path: Path) -> dict[str, ast.ClassDef]:
    """The module-level classes of `path` that are nn.Module subclasses, by name (statically)."""
    tree = parse(path)
    if tree is None:
        return {}
    imports = imported_names(path)
    classes = {n.name: _Class(n, tuple(b for b in map(_dotted, n.bases) if b)) for n in tree.body if isinstance(n, ast.ClassDef)}
    found: dict[str, ast.ClassDef] = {}
    changed = True
    while changed:  # fixpoint: a class may derive from one defined further down
        changed = False
        for name, cls in classes.items():
            if name not in found and any(_is_module_base(b, imports, found, path) for b in cls.bases):
                found[name] = cls.node
                changed = True
    return found


_visiting: set[tuple[Path, str]] = set()


def _is_module_base(base: str, imports: dict[str, Imported], local: dict[str, ast.ClassDef], path: Path) -> bool:
    if base in local:
        return True
    qualified, user = _qualify(base, imports)
    if user is not None and user.file is not None and user.attr is not None:
        key = (user.file, user.attr)
        if key in _visiting:  # an import cycle
            return False
        _visiting.add(key)
        try:
            return user.attr in module_classes(user.file)
        finally:
            _visiting.discard(key)
    return _torch_module_name(qualified)


def _required(fn: ast.FunctionDef | ast.AsyncFunctionDef, skip_first: bool) -> list[str]:
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    if skip_first and positional:
        positional = positional[1:]
    needed = positional[: len(positional) - len(args.defaults)] if args.defaults else positional
    if skip_first and len(args.defaults) > len(positional):  # defaults cover more than the non-self args
        needed = []
    kw = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
    return [a.arg for a in needed] + kw


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _lookup(cls: ast.ClassDef, name: str, path: Path, depth: int = 0) -> tuple[ast.FunctionDef | None, bool]:
    """(the method `name` on `cls` or a user base class, whether a torch/Lightning base provides it)."""
    own = _method(cls, name)
    if own is not None or depth > 20:
        return own, False
    imports = imported_names(path)
    local = module_classes(path)
    for base in filter(None, map(_dotted, cls.bases)):
        if base in local:
            found, torch_base = _lookup(local[base], name, path, depth + 1)
        else:
            qualified, user = _qualify(base, imports)
            if user is not None and user.file is not None and user.attr in module_classes(user.file):
                found, torch_base = _lookup(module_classes(user.file)[user.attr], name, user.file, depth + 1)
            else:
                found, torch_base = None, _torch_module_name(qualified) and (
                    name == "__init__" or not qualified.endswith(".Module"))  # nn.Module has no usable forward
        if found is not None or torch_base:
            return found, torch_base
    return None, False


def _returns_module(fn: ast.FunctionDef, path: Path) -> bool:
    imports = imported_names(path)
    local = module_classes(path)

    def names_module(name: str | None) -> bool:
        return name is not None and (name in local or _is_module_base(name, imports, local, path))

    if fn.returns is not None and names_module(_dotted(fn.returns)):
        return True
    for node in _own_nodes(fn):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Call) and names_module(_dotted(node.value.func)):
            return True
    return False


def _own_nodes(fn: ast.FunctionDef) -> Iterable[ast.AST]:
    """The nodes of `fn`'s body, not those of functions or classes nested in it."""
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def definitions(path: Path, shown: str) -> tuple[list[str], list[Skipped]]:
    """The targets `path` defines that can be built without arguments, and those skipped with why.
    `shown` is how the path is written in target strings."""
    tree = parse(path)
    if tree is None:
        raise SyntaxError(_syntax_error(path))
    targets: list[str] = []
    skipped: list[Skipped] = []
    classes = module_classes(path)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in classes:
            target = f"{shown}:{node.name}"
            init, _ = _lookup(node, "__init__", path)
            forward, torch_forward = _lookup(node, "forward", path)
            needed = _required(init, skip_first=True) if init is not None else []
            if node.name.startswith("_"):
                skipped.append(Skipped(target, "private name (leading underscore)"))
            elif forward is None and not torch_forward and not _method(node, "__call__"):
                skipped.append(Skipped(target, "defines no forward (a base class?)"))
            elif forward is not None and _abstract(forward):
                skipped.append(Skipped(target, "its forward is abstract (raises NotImplementedError)"))
            elif needed:
                skipped.append(Skipped(target, f"needs arguments: {', '.join(needed)}"))
            else:
                targets.append(target)
        elif isinstance(node, ast.FunctionDef) and _returns_module(node, path):
            target = f"{shown}:{node.name}"
            needed = _required(node, skip_first=False)
            if node.name.startswith("_"):
                skipped.append(Skipped(target, "private name (leading underscore)"))
            elif needed:
                skipped.append(Skipped(target, f"needs arguments: {', '.join(needed)}"))
            else:
                targets.append(target)
    return targets, skipped


def _syntax_error(path: Path) -> str:
    try:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        return f"{relative(path)}:{exc.lineno}: syntax error: {exc.msg}. Fix the file and run again."
    except (OSError, ValueError) as exc:
        return f"{relative(path)}: cannot be read: {exc}."
    return f"{relative(path)}: cannot be parsed."


def _abstract(fn: ast.FunctionDef) -> bool:
    body = [n for n in fn.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    if not body:
        return True
    first = body[0]
    if isinstance(first, ast.Raise) and first.exc is not None:
        exc = first.exc.func if isinstance(first.exc, ast.Call) else first.exc
        return _dotted(exc) == "NotImplementedError"
    return any(_dotted(d) in ("abstractmethod", "abc.abstractmethod") for d in fn.decorator_list)


# -- expanding command-line targets ----------------------------------------------------------------------


def target_file(target: str, roots: Sequence[Path]) -> Path | None:
    """The file a `FILE.py:NAME` or `pkg.mod:NAME` target names, when it can be found (no import)."""
    head = target.split("(", 1)[0]
    location, _, _ = head.rpartition(":")
    if location.endswith(".py"):
        path = Path(location)
        return path.resolve() if path.is_file() else None
    parts = location.split(".")
    for root in roots:
        for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate.resolve()
    return None


def expand(raw_targets: Sequence[str], configured: Sequence[str], exclude: Sequence[str] = (), base: Path | None = None,
           affected: bool = False) -> Discovery:
    """Command-line targets -> the targets to check. `FILE.py:NAME` targets pass through. A path selects
    the configured targets defined in it when `configured` is not empty, else discovers what it defines.
    With `affected`, the paths are changed files: targets in files that import them (transitively,
    through the user's own modules) are selected too."""
    base = base or Path.cwd()
    result = Discovery()
    paths: list[Path] = []
    for raw in raw_targets:
        if is_path_target(raw):
            result.paths_given = True
            path = Path(raw.strip())
            if not path.exists():
                raise FileNotFoundError(raw)
            if path.is_file() and path.suffix != ".py":
                if path.name == "pyproject.toml" and path.resolve().parent == base.resolve():
                    paths.append(base)  # the configuration changed (pre-commit passes it): everything is affected
                continue  # other non-Python files (pre-commit's `types_or`) define no model
            paths.append(path)
        else:
            result.targets.append(raw)
    if not paths:
        return result
    files = [f.resolve() for p in paths for f in python_files(p, exclude, base)]
    chosen = set(files)
    graph = ImportGraph()
    if configured:
        roots = [base, Path.cwd()]
        for target in configured:
            file = target_file(target, roots)
            if file is None:
                continue
            related = graph.closure(file) if affected else {file}
            if any(f in chosen for f in related) or any(file.is_relative_to(p.resolve()) for p in paths if p.is_dir()):
                result.targets.append(target)
        return result
    if affected:  # files elsewhere in the project that import a changed file
        for path in python_files(base, exclude, base):
            resolved = path.resolve()
            if resolved not in chosen and chosen & graph.closure(resolved):
                files.append(resolved)
                chosen.add(resolved)
    for file in dict.fromkeys(files):
        try:
            targets, skipped = definitions(file, relative(file))
        except SyntaxError as exc:
            result.broken.append((relative(file), str(exc)))
            continue
        result.targets.extend(targets)
        result.discovered.update(targets)
        result.skipped.extend(skipped)
    return result


# Error kinds that mean "this definition cannot be checked as it stands", not "the code is broken".
SKIPPABLE = frozenset({ErrorKind.CONSTRUCT, ErrorKind.INPUT})


def settle(reports: list, discovery: Discovery) -> list:  # type: ignore[type-arg]
    """Move discovered targets that could not be built, or whose forward rejects the input gradlint
    inferred for it, into `discovery.skipped`; the rest (real import and analysis errors) stay."""
    kept = []
    for report in reports:
        error = report.error
        guessed = error is not None and error.kind is ErrorKind.CAPTURE and (report.input_source or "").startswith("inferred")
        if report.target in discovery.discovered and error is not None and (error.kind in SKIPPABLE or guessed):
            kind = "input" if guessed else error.kind.value
            discovery.skipped.append(Skipped(report.target, f"{kind}: {error.message}"))
        else:
            kept.append(report)
    return kept
