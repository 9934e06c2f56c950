"""Load stage: target string -> an `nn.Module` instance, with its creation record.

gradlint imports and runs the user's code, exactly as pytest does with test files. Nothing else is
executed: target arguments are literals, configuration is data, and the callable a target names is a
model class or a function of the user's or of a model library (gradlint.callables), never a command."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch import nn

from gradlint.callables import check_callable, check_module
from gradlint.recorder import ConstructionRecord, recording
from gradlint.sources import display_path, import_file
from gradlint.target import TargetSpec, parse_target
from gradlint.types import ErrorKind, GradlintError


@dataclass
class LoadedModel:
    spec: TargetSpec
    model: nn.Module
    record: ConstructionRecord
    source_path: str | None  # the file the target names, when it names a file


@contextmanager
def restored_interpreter_state() -> Iterator[None]:
    """Leave sys.path and the working directory as they were, whatever the user's code does, and forget
    the modules imported from folders the target put on sys.path, so that two targets with same-named
    sibling files (`blocks.py` in two projects) never share one."""
    saved_path = list(sys.path)
    saved_modules = dict(sys.modules)
    saved_cwd = os.getcwd()
    try:
        yield
    finally:
        added = [os.path.abspath(p) + os.sep for p in sys.path if p and p not in saved_path]
        for name in set(sys.modules) - set(saved_modules):
            file = getattr(sys.modules.get(name), "__file__", None) or ""
            if added and os.path.abspath(file).startswith(tuple(added)):
                del sys.modules[name]
        for name, module in saved_modules.items():  # a user file named like a module we had (config.py)
            if sys.modules.get(name) is not module:
                sys.modules[name] = module
        sys.path[:] = saved_path
        if os.getcwd() != saved_cwd:
            os.chdir(saved_cwd)


def load_target(raw: str) -> LoadedModel:
    """Import the target's module and build the model. Caller wraps this in `restored_interpreter_state`."""
    spec = parse_target(raw)
    with recording() as record:
        module = _import_file(spec) if spec.is_file else _import_dotted(spec)
        obj = _resolve(module, spec)
        model = _instantiate(obj, spec)
    source = display_path(spec.location) if spec.is_file else getattr(module, "__file__", None)
    return LoadedModel(spec=spec, model=model, record=record, source_path=source)


def _import_file(spec: TargetSpec) -> ModuleType:
    check_module(spec.location, True, spec.raw)  # never a standard-library file
    path = os.path.abspath(spec.location)
    if not os.path.isfile(path):
        raise GradlintError(
            ErrorKind.LOAD,
            f"{spec.location}: no such file. Check the path in target {spec.raw!r}; it is relative to the "
            f"current directory ({os.getcwd()}).",
        )
    folder = os.path.dirname(path)
    name = os.path.splitext(os.path.basename(path))[0]
    if folder not in sys.path:
        sys.path.insert(0, folder)  # sibling imports work, as when running the file
    package = _package_module(path)  # inside a package: imported as one, so relative imports work
    existing = sys.modules.get(package[0] if package else name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") == path:
        return existing
    try:
        module = importlib.import_module(package[0]) if package else import_file(name, path)
    except SyntaxError as exc:
        where = f"{display_path(exc.filename or path)}:{exc.lineno}"
        raise GradlintError(
            ErrorKind.LOAD,
            f"{where}: syntax error while importing target {spec.raw!r}: {exc.msg}. Fix the file and run again.",
        ) from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise GradlintError(
            ErrorKind.LOAD,
            f"{spec.location}: importing the file raised {type(exc).__name__}: {exc}. gradlint imports the "
            "file as Python does (its folder on sys.path); fix the import or install what it needs.",
        ) from exc
    return module


def _package_module(path: str) -> tuple[str, str] | None:
    """(dotted name, package root) for a file inside a package (folders with `__init__.py`), with the root
    put on sys.path as pytest does; None for a plain file or when the package name is already taken by
    another module (then the file is imported on its own, as before)."""
    from pathlib import Path

    from gradlint.pysource import module_name, package_root

    root = str(package_root(Path(path)))
    if root == os.path.dirname(path):
        return None
    dotted = module_name(Path(path))
    top = sys.modules.get(dotted.split(".")[0])
    if top is not None and not os.path.abspath(getattr(top, "__file__", "") or "").startswith(root + os.sep):
        return None
    if root not in sys.path:
        sys.path.insert(0, root)
    return dotted, root


def _import_dotted(spec: TargetSpec) -> ModuleType:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    check_module(spec.location, False, spec.raw)  # found as it will be imported: a local `code/` is the user's
    try:
        return importlib.import_module(spec.location)
    except ModuleNotFoundError as exc:
        raise GradlintError(
            ErrorKind.LOAD,
            f"Module {spec.location!r} (target {spec.raw!r}) cannot be found: {exc}. Give a file path ending "
            "in .py, or install the package / run from the folder that contains it.",
        ) from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise GradlintError(
            ErrorKind.LOAD,
            f"Importing module {spec.location!r} raised {type(exc).__name__}: {exc}.",
        ) from exc


def _resolve(module: ModuleType, spec: TargetSpec) -> Any:
    obj: Any = module
    for part in spec.name.split("."):
        if not hasattr(obj, part):
            available = sorted(
                n for n, v in vars(module).items()
                if not n.startswith("_") and (isinstance(v, nn.Module) or (isinstance(v, type) and issubclass(v, nn.Module)))
            )
            hint = f" Modules defined there: {', '.join(available)}." if available else ""
            raise GradlintError(
                ErrorKind.LOAD,
                f"{spec.location}: has no attribute {spec.name!r} (target {spec.raw!r}).{hint}",
            )
        obj = getattr(obj, part)
    return obj


def _instantiate(obj: Any, spec: TargetSpec) -> nn.Module:
    if isinstance(obj, nn.Module):
        if spec.called:
            raise GradlintError(
                ErrorKind.CONSTRUCT,
                f"{spec.raw}: {spec.name} is an nn.Module instance, not a class or factory; drop the call.",
            )
        return obj
    if not callable(obj):
        raise GradlintError(
            ErrorKind.CONSTRUCT,
            f"{spec.raw}: {spec.name} is a {type(obj).__name__}, not an nn.Module class, factory function "
            "or instance.",
        )
    what = "constructor" if isinstance(obj, type) else "factory"
    check_callable(obj, spec.name, spec.raw)  # never a standard-library, built-in or torch function
    if isinstance(obj, type) and not issubclass(obj, nn.Module):
        raise GradlintError(
            ErrorKind.CONSTRUCT,
            f"{spec.raw}: {spec.name} is a class but not an nn.Module subclass.",
        )
    try:
        model = obj(*spec.args, **spec.kwargs)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise GradlintError(
            ErrorKind.CONSTRUCT,
            f"{spec.raw}: the {what} {spec.name}(...) raised {type(exc).__name__}: {exc}. Check the "
            "arguments given in the target (literals only).",
        ) from exc
    if not isinstance(model, nn.Module):
        raise GradlintError(
            ErrorKind.CONSTRUCT,
            f"{spec.raw}: the {what} {spec.name}(...) returned {type(model).__name__}, not an nn.Module. "
            "A factory must return the model.",
        )
    return model
