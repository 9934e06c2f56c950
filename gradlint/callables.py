"""What a target may name: which modules gradlint imports and which callables it calls.

A target string can come from a repository's pyproject.toml, so NAME must never be a command:
`os:system("...")`, `subprocess:run([...])`, `builtins:exec(...)`, `shutil:copy(...)`. gradlint calls
only an `nn.Module` class, or a Python function (a plain function, a bound or class method, a
functools.partial or a decorated function of one) *defined* in a user's file or in an installed
library that depends on torch. Standard-library and built-in callables, C functions, torch's own
functions (`torch.save`, `torch.hub.load`) and gradlint's own are refused. The standard library is
decided by where the code lives (sysconfig's stdlib folders, built-in and frozen modules), not by
names: a user's `test.py` or `code.py` is the user's file."""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import re
import sys
import sysconfig
import types
from typing import Any

import torch
from torch import nn

from gradlint.types import ErrorKind, GradlintError

_POLICY = ("gradlint calls only nn.Module classes and Python functions defined in your files or in an installed "
           "library that depends on torch, so that a target (or a `targets` entry in pyproject.toml) cannot run a "
           "command; to build the model another way, write a factory function in your own file and name it.")


def _folder(path: str) -> str:
    return os.path.normcase(os.path.realpath(path)) + os.sep


@functools.lru_cache(maxsize=1)
def _stdlib_folders() -> tuple[str, ...]:
    roots: set[str] = set()
    for scheme_vars in (None, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix,
                               "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars) if scheme_vars else sysconfig.get_paths()
        roots.update(_folder(paths[key]) for key in ("stdlib", "platstdlib") if paths.get(key))
    return tuple(sorted(roots))


def _installed(path: str) -> bool:
    """Inside an installation folder (site-packages, dist-packages), wherever that is."""
    parts = os.path.normcase(os.path.realpath(path)).split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts


def is_stdlib_file(path: str) -> bool:
    """A file of Python's standard library: under its folders and not in an installation folder there
    (a virtualenv's lib/pythonX.Y holds site-packages), or frozen into the interpreter (`<frozen os>`)."""
    if path.startswith("<frozen "):
        return True
    real = os.path.normcase(os.path.realpath(path))
    return real.startswith(_stdlib_folders()) and not _installed(real)


def _own_folders() -> tuple[str, str]:
    return _folder(os.path.dirname(torch.__file__)), _folder(os.path.dirname(os.path.abspath(__file__)))


def check_module(location: str, is_file: bool, raw: str) -> None:
    """Refuse, before importing it, a target module that is part of the standard library: it defines no
    model, and importing some (`antigravity`, `this`) already does something."""
    if is_file:
        if is_stdlib_file(os.path.abspath(location)):
            raise GradlintError(ErrorKind.LOAD, f"Target {raw!r}: {location} is a file of Python's standard library, "
                                                f"which defines no model. {_POLICY}")
        return
    top = location.split(".", maxsplit=1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return  # the import itself then says what is wrong
    origin = None if spec is None else spec.origin
    if spec is None:
        return
    stdlib = (top in sys.builtin_module_names or origin in ("built-in", "frozen")
              or (origin is not None and is_stdlib_file(origin))
              or (origin is None and top in sys.stdlib_module_names
                  and all(is_stdlib_file(p) for p in (spec.submodule_search_locations or []))))
    if stdlib:
        raise GradlintError(ErrorKind.LOAD, f"Target {raw!r}: module {top!r} is part of Python's standard library, "
                                            f"which defines no model. {_POLICY}")


def check_callable(obj: Any, name: str, raw: str) -> None:
    """Raise unless calling `obj` (found as `name`) is calling model code: see the module docstring."""
    if isinstance(obj, type):
        return  # classes: load accepts only nn.Module subclasses
    why = _refusal(obj, depth=0)
    if why:
        raise GradlintError(ErrorKind.LOAD, f"Target {raw!r}: gradlint does not call {name}: {why}. {_POLICY}")


def _refusal(obj: Any, depth: int) -> str | None:
    if depth > 20:
        return "it wraps callables too deeply to tell where its code is defined"
    if isinstance(obj, functools.partial):
        return _refusal(obj.func, depth + 1)
    if isinstance(obj, type):
        return None if issubclass(obj, nn.Module) else f"it is the class {_qualified(obj)}, not an nn.Module subclass"
    function = obj.__func__ if inspect.ismethod(obj) else obj
    try:
        function = inspect.unwrap(function)
    except ValueError:
        return "its __wrapped__ chain is a cycle"
    if not isinstance(function, types.FunctionType):
        call = getattr(type(function), "__call__", None)  # noqa: B004 -- reads the method itself, not a callable test
        if not inspect.isroutine(function) and isinstance(call, types.FunctionType):
            return _refusal(call, depth + 1)  # an instance whose class defines __call__ in Python
        return (f"it is {_qualified(function)}, a built-in or C-implemented callable, not a Python function that "
                "builds a model")
    file = function.__code__.co_filename
    if is_stdlib_file(file):
        return f"it is {_qualified(function)}, a function of Python's standard library"
    if file.startswith("<") or not os.path.isfile(file):
        return f"it is {_qualified(function)}, which is not defined in a file ({file})"
    real = os.path.normcase(os.path.realpath(file))
    torch_dir, own_dir = _own_folders()
    if real.startswith(torch_dir):
        return (f"it is {_qualified(function)}, a function of torch itself (torch's functions run operations, save, "
                "load or download; none builds a model from literals)")
    if real.startswith(own_dir):
        return f"it is {_qualified(function)}, a function of gradlint itself"
    if _installed(real):
        top = (function.__module__ or "").split(".")[0]
        distributions = _distributions(top)
        if not any(_depends_on_torch(d) for d in distributions):
            which = ", ".join(distributions) or top
            return (f"it is {_qualified(function)}, from the installed package {which}, which does not depend on torch, "
                    "so it is not a model library")
    return None


def _qualified(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return f"{module}.{name}" if module and module != "builtins" else f"builtins.{name}" if module else str(name)


@functools.cache
def _distributions(top: str) -> tuple[str, ...]:
    from importlib import metadata

    return tuple(metadata.packages_distributions().get(top, ()))


@functools.cache
def _depends_on_torch(distribution: str) -> bool:
    """The distribution requires torch, directly or in an extra (transformers lists it as one)."""
    from importlib import metadata

    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return False
    names = (re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r) for r in requirements)
    return any(m is not None and re.sub(r"[-_.]+", "-", m.group(1)).lower() == "torch" for m in names)
