"""`--data data.py:NAME` and `gradlint.check(model, data=...)`: one real batch as the example input, so the
probe and the estimator's input statistics see the data the model will train on (raw 0-255 pixels too).

NAME is a batch, a function returning one, or a DataLoader (any iterable) whose first batch is used. A
batch takes `example_input_array`'s forms: a tensor is the one argument, a tuple or list the positional
arguments, a dict the keyword arguments. A tuple longer than the forward takes positionally is a
DataLoader's (inputs, targets) pair: its leading items are the arguments, the rest is left out."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from gradlint.call import Call, as_call
from gradlint.inputs import ResolvedInputs, model_device
from gradlint.types import ErrorKind, GradlintError


def load_data(spec: str) -> Any:
    """The object `FILE.py:NAME` or `package.module:NAME` names, imported as targets are."""
    from gradlint.load import _import_dotted, _import_file, _resolve
    from gradlint.target import parse_target

    try:
        parsed = parse_target(spec)
        module = _import_file(parsed) if parsed.is_file else _import_dotted(parsed)
        obj = _resolve(module, parsed)
    except GradlintError as exc:  # the target's load error, as the input error of the --data option
        raise GradlintError(ErrorKind.INPUT, f"--data {spec!r}: {exc.message}") from None
    if not parsed.called:
        return obj
    try:
        return obj(*parsed.args, **parsed.kwargs)
    except Exception as exc:
        raise GradlintError(ErrorKind.INPUT, f"--data {spec!r}: calling {parsed.name} raised {type(exc).__name__}: {exc}.") from exc


def data_inputs(data: Any, model: nn.Module, label: str | None = None) -> ResolvedInputs:
    """The example call made of `data` (a spec string, a batch, a function or an iterable of batches)."""
    from gradlint.probe import preserved_global_state

    what = label or (f"--data {data}" if isinstance(data, str) else "data")
    obj = load_data(data) if isinstance(data, str) else data
    how = ""
    with preserved_global_state():  # a shuffling DataLoader draws from the global RNG
        try:
            if callable(obj) and not isinstance(obj, (torch.Tensor, nn.Module)) and not _iterable_of_batches(obj):
                obj, how = obj(), "returned by the function"
            if _iterable_of_batches(obj):
                obj, how = next(iter(obj)), "its first batch"
        except StopIteration:
            raise GradlintError(ErrorKind.INPUT, f"{what}: the iterable is empty, so there is no batch to check with.") from None
        except GradlintError:
            raise
        except Exception as exc:
            raise GradlintError(ErrorKind.INPUT, f"{what}: getting a batch raised {type(exc).__name__}: {exc}.") from exc
    try:
        call = as_call(obj)
    except TypeError as exc:
        raise GradlintError(ErrorKind.INPUT, f"{what}: {exc}.") from None
    call, dropped = _fit(call, model)
    if not call.tensors():
        raise GradlintError(ErrorKind.INPUT, f"{what}: the batch holds no tensor ({type(obj).__name__}). Give a tensor, a "
                                             "tuple or list of arguments, a dict of keyword arguments, a function "
                                             "returning one, or a DataLoader.")
    source = f"{what}" + (f" ({how})" if how else "") + (f", without its last {dropped} item(s)" if dropped else "")
    return ResolvedInputs(call.to(model_device(model)), source)


def _iterable_of_batches(obj: Any) -> bool:
    """A DataLoader, a generator, a dataset-like iterable: not a batch itself."""
    if isinstance(obj, (torch.Tensor, str, bytes, tuple, list, Mapping, nn.Module)):
        return False
    return isinstance(obj, Iterable)


def _fit(call: Call, model: nn.Module) -> tuple[Call, int]:
    """Drop the trailing positional items (targets) that the forward has no parameter for."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return call, 0
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return call, 0
    slots = sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    if len(call.args) <= slots or slots == 0:
        return call, 0
    return Call(call.args[:slots], call.kwargs), len(call.args) - slots
