"""How gradlint calls a model: positional and keyword example arguments in, the contract's `y` out.

Every stage (capture, estimate, probe) sees the same call. Whatever the forward returns (a tensor, a
tuple, a dict, a `ModelOutput`, a dataclass, an object holding a cache), `y` is its first tensor found
depth-first and the rest is ignored, so one mechanism serves every model instead of a list of libraries."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

ROOT = "model"  # the attribute under which `ReturnsY` holds the user's model; stripped from every path


@dataclass
class Call:
    """The example arguments of one forward call."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def tensors(self) -> list[torch.Tensor]:
        """The tensor arguments in the order `torch.export` turns them into graph inputs."""
        leaves = torch.utils._pytree.tree_leaves((self.args, self.kwargs))
        return [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]

    def batch(self) -> int:
        first = next((t for t in self.tensors() if t.dim()), None)
        return int(first.shape[0]) if first is not None else 0

    def to(self, device: torch.device | str) -> Call:
        def move(value: Any) -> Any:
            return value.to(device) if isinstance(value, torch.Tensor) else value

        return Call(tuple(torch.utils._pytree.tree_map(move, list(self.args))),
                    dict(torch.utils._pytree.tree_map(move, dict(self.kwargs))))

    def describe(self) -> str:
        """float32[16, 7], attention_mask=int64[16, 32]: what a person would write with --input."""
        parts = [_describe(a) for a in self.args] + [f"{k}={_describe(v)}" for k, v in self.kwargs.items()]
        return ", ".join(parts)


def as_call(value: Any) -> Call:
    """Arguments as Lightning reads `example_input_array`: a tensor is the one positional argument, a tuple
    or list the positional arguments, a dict (any mapping) the keyword arguments."""
    if isinstance(value, Call):
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a dict of example inputs must have argument names (strings) as keys")
        return Call((), dict(value))
    if isinstance(value, (tuple, list)):
        return Call(tuple(value), {})
    return Call((value,), {})


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}{list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in value) + ")"
    return type(value).__name__


def _children(value: Any) -> list[Any] | None:
    """What a forward's output holds, in order: tuple and list items, dict values (as in a `ModelOutput`),
    dataclass fields. None for anything else (caches, configs are not searched)."""
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [getattr(value, f.name, None) for f in dataclasses.fields(value)]
    return None


def first_tensor(value: Any) -> torch.Tensor | None:
    """The contract's y: the first tensor found depth-first in tuples, lists, dicts (values in order, as in
    a `ModelOutput`) and dataclasses (fields in order). Other objects (caches, configs) are not searched."""
    if isinstance(value, torch.Tensor):
        return value
    for item in _children(value) or ():
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def all_tensors(value: Any, depth: int = 0) -> list[torch.Tensor]:
    """Every tensor the output holds, depth-first in the order `first_tensor` searches (y comes first)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if depth > 8:
        return []
    return [t for item in _children(value) or () for t in all_tensors(item, depth + 1)]


class ReturnsY(nn.Module):
    """A thin wrapper whose forward returns only the user's model's y, so that capture never has to
    flatten what else the forward returns (a `DynamicCache`, an `EncoderDecoderCache`, a `None`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        setattr(self, ROOT, model)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = first_tensor(getattr(self, ROOT)(*args, **kwargs))
        if y is None:
            raise TypeError("the model's forward returned no tensor")
        return y


def user_path(path: str) -> str:
    """A module or parameter path inside `ReturnsY` as the user's model names it."""
    if path == ROOT:
        return ""
    return path.removeprefix(ROOT + ".")


def unwrap(model: nn.Module) -> tuple[nn.Module, str | None]:
    """The module a wrapper runs (`torch.compile`, `DataParallel`, `DistributedDataParallel`), with a note
    saying so; any other module is itself. Wrappers add no layers, only a way to run the inner ones."""
    notes = []
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        what = "a torch.compile'd module"
        if not isinstance(inner, nn.Module) and isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            inner, what = model.module, f"a {type(model).__name__} wrapper"
        if not isinstance(inner, nn.Module) or inner is model:
            break
        notes.append(f"{what} ({type(inner).__name__} inside)")
        model = inner
    if not notes:
        return model, None
    return model, "checked the module inside " + ", then ".join(notes) + "; wrappers add no layers"
