"""Capture stage: module + example inputs -> `ModelGraph`, trying each method until one follows the model."""

from __future__ import annotations

import copy
import logging
import os
import sysconfig
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from gradlint.call import Call, as_call
from gradlint.capture.common import CaptureFailed, training_mode
from gradlint.capture.eager import capture_eager
from gradlint.capture.export import capture_export
from gradlint.graph import ModelGraph
from gradlint.types import ErrorKind, GradlintError

METHODS = (("torch.export", capture_export), ("eager-recording", capture_eager))
# torch logs a full traceback at ERROR level when fake-tensor propagation fails; the failure is ours to report
_NOISY_LOGGERS = ("torch._subclasses.fake_tensor",)
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_STDLIB_DIR = sysconfig.get_paths()["stdlib"] + os.sep
_SITE_DIRS = tuple({sysconfig.get_paths()[k] + os.sep for k in ("purelib", "platlib")})


def capture(model: nn.Module, call: Call) -> ModelGraph:
    """The graph from the example call to the contract's y, in training mode, by the first method that
    works; earlier failures become notes."""
    call = as_call(call)
    failures: list[str] = []
    with training_mode(model), _quiet_torch_logs():
        for name, method in METHODS:
            try:
                graph = method(model, call)
            except CaptureFailed as exc:
                failures.append(f"{name}: {exc}")
                continue
            graph.notes = [f"{f} (fell back to {graph.method})" for f in failures] + graph.notes
            graph.fallback = bool(failures)
            return graph
    located = _locate_failure(model, call)
    if located is not None:
        message, cause = located
        raise GradlintError(ErrorKind.CAPTURE, message) from cause
    raise GradlintError(
        ErrorKind.CAPTURE,
        "No capture method could follow the model's forward. " + "; ".join(failures)
        + f". The forward itself runs on the example input ({call.describe()}), so this is a limit of gradlint's "
        "capture: please report it; --verbose shows the traceback.",
    )


@contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _user_frame(exc: BaseException) -> str | None:
    """The innermost traceback frame outside torch, the standard library and gradlint: where the user's code failed."""
    own = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = os.path.abspath(frame.filename)
        library = path.startswith((own, _TORCH_DIR)) or (path.startswith(_STDLIB_DIR) and not path.startswith(_SITE_DIRS))
        if not library and os.path.isfile(path):
            found = f"{os.path.relpath(path)}:{frame.lineno}"
    return found


def _locate_failure(model: nn.Module, call: Call) -> tuple[str, BaseException] | None:
    """Run the forward once eagerly on a copy to name the module that raised, the input it got and the
    user's error, which the capture methods' own messages bury in tracing internals."""
    from gradlint.probe import preserved_global_state

    try:
        twin = copy.deepcopy(model)
    except Exception:
        return None
    paths = {id(m): name for name, m in twin.named_modules()}
    stack: list[tuple[str, nn.Module, tuple[Any, ...]]] = []

    def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
        if id(module) in paths:
            stack.append((paths[id(module)], module, args))

    def post(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if id(module) in paths and stack:
            stack.pop()

    handles = (torch.nn.modules.module.register_module_forward_pre_hook(pre),
               torch.nn.modules.module.register_module_forward_hook(post))
    try:
        with preserved_global_state(), torch.no_grad():
            twin(*call.args, **call.kwargs)
    except Exception as exc:
        cause: BaseException = exc
    else:
        return None
    finally:
        for handle in handles:
            handle.remove()
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    error = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
    where = _user_frame(cause)
    at = f" (raised at {where})" if where else ""
    path, module, args = stack[-1] if stack else ("", twin, call.args)
    if path:
        layer = f"module `{path}` ({module!r})" if len(repr(module)) <= 120 else f"module `{path}` ({type(module).__name__})"
        what = f"{layer} rejected its input {Call(tuple(args)).describe()} with {error}{at}"
    else:
        what = f"the forward of {type(module).__name__} raised {error}{at}"
    return (
        f"The forward failed on the example input {call.describe()}: {what}. Give an input the model accepts with "
        "--input (or set `example_input_array` on the model), or fix the forward; --verbose shows the traceback.",
        cause,
    )


__all__ = ["CaptureFailed", "ModelGraph", "capture"]
