"""What every capture method shares: module tables, the training-mode guard, value conversion."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class CaptureFailed(Exception):
    """One capture method could not follow the model; the next one is tried."""


def module_types(model: nn.Module) -> dict[str, str]:
    return {name: type(m).__name__ for name, m in model.named_modules()}


def leaf_weights(model: nn.Module) -> dict[str, str]:
    """Weighted layers: leaf modules that directly own a parameter of two or more dimensions."""
    found: dict[str, str] = {}
    for path, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        for pname, param in module.named_parameters(recurse=False):
            if param.dim() >= 2:
                found[path] = f"{path}.{pname}" if path else pname
                break
    return found


@contextmanager
def training_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in training mode for the block, then restore each flag as it was."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.train()
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def shape_of(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, torch.Tensor):
        try:
            return tuple(int(d) for d in value.shape)
        except (TypeError, RuntimeError):
            return None
    return None


def canonical_op(target: Any) -> tuple[str, bool]:
    """("relu", True) for aten.relu_; the op's packet name without the in-place underscore."""
    packet = getattr(target, "_overloadpacket", None)
    name = getattr(packet, "__name__", None) or getattr(target, "__name__", str(target))
    if not isinstance(name, str):
        name = str(name)
    if name.endswith("_") and not name.endswith("__") and not name.startswith("_"):
        return name[:-1], True
    return name, False
