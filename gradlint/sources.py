"""Which source lines are the user's: the deepest frame outside torch, gradlint and the stdlib."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import sysconfig
from functools import lru_cache
from types import FrameType, ModuleType

from gradlint.types import SourceLocation

_TORCH_SPEC = importlib.util.find_spec("torch")  # where torch lives, without importing it (`gradlint rules`)
_TORCH_DIR = os.path.dirname(_TORCH_SPEC.origin) if _TORCH_SPEC is not None and _TORCH_SPEC.origin else ""
_GRADLINT_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIR = sysconfig.get_paths()["stdlib"]
_NOT_USER = tuple(os.path.normcase(p) + os.sep for p in (_TORCH_DIR, _GRADLINT_DIR, _STDLIB_DIR) if p)
_FRAME_RE = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+)')


_IPYTHON_INPUT = re.compile(r"^<ipython-input-(?P<count>\d+)-[0-9a-f]+>$")


@lru_cache(maxsize=4096)
def is_user_file(path: str) -> bool:
    if _IPYTHON_INPUT.match(path or ""):
        return True  # a cell of IPython's terminal or InteractiveShell
    if not path or path.startswith("<"):
        return False
    return not os.path.normcase(os.path.abspath(path)).startswith(_NOT_USER)


def cell_name(path: str) -> str | None:
    """"Cell In[3]" (IPython's own name in tracebacks) for the file name IPython compiled cell 3 under
    (`/tmp/ipykernel_<pid>/<hash>.py` in Jupyter, `<ipython-input-3-<hash>>` in IPython); None otherwise."""
    count: object = None
    if "IPython" in sys.modules:  # never imported here: only a running IPython has cells
        shell = getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
        count = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(path)
    match = _IPYTHON_INPUT.match(path)
    if count is None and match:
        count = match["count"]
    return f"Cell In[{count}]" if count is not None else None


def location(path: str, line: int) -> SourceLocation:
    """A location in `path` (a file or a notebook cell) as shown to the user, keeping the name linecache
    reads it under (a suppression comment on that line is found there)."""
    shown = display_path(path)
    return SourceLocation(shown, line, None if shown == path else path)


def display_path(path: str) -> str:
    """A path relative to the working directory when it lies below it (what editors and SARIF want); a
    notebook cell's name for a cell."""
    cell = cell_name(path)
    if cell is not None:
        return cell
    absolute = os.path.abspath(path)
    try:
        rel = os.path.relpath(absolute)
    except ValueError:
        return absolute
    return absolute if rel.startswith("..") else rel.replace(os.sep, "/")


def user_frame(frame: FrameType | None, skip_self: object | None = None) -> SourceLocation | None:
    """The innermost user frame at or above `frame`, skipping frames whose `self` is `skip_self`."""
    while frame is not None:
        path = frame.f_code.co_filename
        if is_user_file(path) and (skip_self is None or frame.f_locals.get("self") is not skip_self):
            return location(path, frame.f_lineno)
        frame = frame.f_back
    return None


def location_from_stack_trace(stack_trace: str | None) -> SourceLocation | None:
    """The deepest user frame in a formatted stack trace (innermost frames come last)."""
    if not stack_trace:
        return None
    found: SourceLocation | None = None
    for match in _FRAME_RE.finditer(stack_trace):
        if is_user_file(match["path"]):
            found = location(match["path"], int(match["line"]))
    return found


def import_file(name: str, path: str) -> ModuleType:
    """Import the Python file at `path` as module `name` (registered in sys.modules first, as import does,
    and removed again if executing it raises). Errors propagate: callers say what they mean to the user."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
