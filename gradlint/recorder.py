"""Records, while the user's file is imported and the model built, where each submodule was created
and how each parameter was initialised, so that a model on the meta device can still be judged."""

from __future__ import annotations

import functools
import inspect
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from gradlint.sources import user_frame
from gradlint.types import SourceLocation

INIT_FUNCTIONS = (
    "constant_", "dirac_", "eye_", "kaiming_normal_", "kaiming_uniform_", "normal_", "ones_",
    "orthogonal_", "sparse_", "trunc_normal_", "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_",
)
_TENSOR_INITS = {
    torch.Tensor.normal_: "normal_",
    torch.Tensor.uniform_: "uniform_",
    torch.Tensor.fill_: "constant_",
    torch.Tensor.zero_: "zeros_",
}


@dataclass(frozen=True)
class InitCall:
    """One initialisation applied to a tensor: an `nn.init` function name and its arguments."""

    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class ConstructionRecord:
    """What the recorder saw. Keyed weakly, so it never keeps the user's objects alive."""

    sites: weakref.WeakKeyDictionary[nn.Module, SourceLocation] = field(default_factory=weakref.WeakKeyDictionary)
    _inits: dict[int, InitCall] = field(default_factory=dict)
    _keep: list[torch.Tensor] = field(default_factory=list)
    _aliases: dict[int, int] = field(default_factory=dict)

    def note_init(self, tensor: torch.Tensor, call: InitCall) -> None:
        key = self._aliases.get(id(tensor), id(tensor))
        self._inits[key] = call
        self._keep.append(tensor)

    def note_alias(self, alias: torch.Tensor, base: torch.Tensor) -> None:
        self._aliases[id(alias)] = self._aliases.get(id(base), id(base))
        self._keep.append(alias)
        self._keep.append(base)

    def init_of(self, tensor: torch.Tensor) -> InitCall | None:
        return self._inits.get(id(tensor))

    def site_of(self, module: nn.Module) -> SourceLocation | None:
        return self.sites.get(module)


class _TensorInitMode(TorchFunctionMode):
    """Sees raw in-place initialisation (`w.data.normal_(0, 0.02)`) that bypasses `nn.init`."""

    def __init__(self, record: ConstructionRecord, depth: list[int]) -> None:
        super().__init__()
        self.record = record
        self.depth = depth

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if self.depth[0] == 0 and args and isinstance(args[0], torch.Tensor):
            name = _TENSOR_INITS.get(func)
            if name is not None:
                self.record.note_init(args[0], InitCall(name, tuple(args[1:]), dict(kwargs)))
            elif getattr(func, "__name__", "") == "__get__" and isinstance(result, torch.Tensor):
                self.record.note_alias(result, args[0])  # `.data` / `.detach()`-style views of a parameter
            elif func is torch.Tensor.detach and isinstance(result, torch.Tensor):
                self.record.note_alias(result, args[0])
        return result


def _wrap_init(name: str, original: Callable[..., Any], record: ConstructionRecord, depth: list[int]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if depth[0] == 0:
            record.note_init(tensor, InitCall(name, args, kwargs))
        depth[0] += 1
        try:
            return original(tensor, *args, **kwargs)
        finally:
            depth[0] -= 1

    return wrapper


@contextmanager
def recording() -> Iterator[ConstructionRecord]:
    """Record creation sites and init calls for everything built inside the block; undo all patches."""
    record = ConstructionRecord()
    depth = [0]

    def on_register(parent: nn.Module, name: str, child: nn.Module | None) -> None:
        if child is not None and child not in record.sites:
            site = user_frame(sys._getframe(1), skip_self=child)
            if site is not None:
                record.sites[child] = site

    module_init = nn.Module.__init__

    def recording_init(self: nn.Module, *args: Any, **kwargs: Any) -> None:  # `self`: nn.Module.__init__'s own name
        module_init(self, *args, **kwargs)
        site = user_frame(sys._getframe(1), skip_self=self)  # the line that constructed it
        if site is not None:
            record.sites[self] = site

    originals = {name: getattr(nn.init, name) for name in INIT_FUNCTIONS}
    with ExitStack() as stack:
        nn.Module.__init__ = recording_init  # type: ignore[method-assign]
        stack.callback(setattr, nn.Module, "__init__", module_init)
        handle = torch.nn.modules.module.register_module_module_registration_hook(on_register)
        stack.callback(handle.remove)
        for name, original in originals.items():
            setattr(nn.init, name, _wrap_init(name, original, record, depth))
            stack.callback(setattr, nn.init, name, original)
        stack.enter_context(_TensorInitMode(record, depth))
        yield record


def class_location(module: nn.Module) -> SourceLocation | None:
    """Where the module's class is defined (the line a class-level suppression sits on)."""
    return _class_location(type(module))  # type: ignore[arg-type]  # classes are hashable; mypy checks their unbound __hash__


@functools.lru_cache(maxsize=1024)
def _class_location(cls: type) -> SourceLocation | None:
    from gradlint.sources import is_user_file, location

    try:
        path = inspect.getsourcefile(cls)
        if path is None or not is_user_file(path):
            return None  # torch's own classes: never parse their (large) files
        _, line = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return None
    return location(path, line)
