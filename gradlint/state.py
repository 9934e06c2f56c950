"""Process state a model's code can change and gradlint must leave as it found it: grad mode, every RNG
it can see (torch CPU and initialised CUDA devices, Python's `random`, numpy's global one when numpy is
imported), default dtype and device, a few global torch flags, global module hooks, and the hooks on
the modules of a given model. `preserved()` snapshots them and restores them after its block, however
the block ends; gradlint wraps every stage that runs user code in it, so a forward that turns grad off
or makes "meta" the default device changes neither gradlint's own computation nor the caller's process."""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

_HOOK_DICT_SUFFIXES = ("_hooks", "_hooks_with_kwargs", "_hooks_always_called")


def _device_context() -> Any:
    """torch.set_default_device's current DeviceContext (None: no default device set)."""
    return getattr(getattr(torch, "_GLOBAL_DEVICE_CONTEXT", None), "device_context", None)


def _restore_default_device(saved: Any, device: torch.device) -> None:
    if _device_context() is saved:
        return
    torch.set_default_device(None)  # exits whatever context the model entered
    if saved is not None:
        torch.set_default_device(device)


def _set_grad(mode: bool) -> None:
    torch.set_grad_enabled(mode)  # called, not entered: sets the mode for the thread


def _flags() -> list[tuple[Callable[[], Any], Callable[[Any], None]]]:
    """(get, set) for global torch settings a forward can flip with one call."""
    pairs: list[tuple[Callable[[], Any], Callable[[Any], None]]] = [
        (torch.is_grad_enabled, _set_grad),
        (torch.get_default_dtype, torch.set_default_dtype),
        (torch.is_anomaly_enabled, torch.set_anomaly_enabled),
        (lambda: (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
         lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1])),
        (torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
        (torch.get_num_threads, torch.set_num_threads),
    ]
    return pairs


def _hook_state(owner: Any) -> dict[str, Any]:
    """The hook dictionaries (copied) and hook flags held in `owner`'s namespace (a module object or an nn.Module)."""
    names = vars(owner)
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in list(names.items())
            if (k.endswith(_HOOK_DICT_SUFFIXES) and isinstance(v, dict)) or k.endswith("is_full_backward_hook")}


def _restore_hooks(owner: Any, saved: dict[str, Any]) -> None:
    """Put the hook dictionaries back in place (the same objects: RemovableHandles keep pointing at them)."""
    names = vars(owner)
    for key, value in saved.items():
        current = names.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            if list(current.items()) != list(value.items()):
                current.clear()
                current.update(value)
        elif current is not value:
            setattr(owner, key, value)


def _rng_state() -> tuple[Any, Any, Any, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None  # type: ignore[no-untyped-call]
    numpy = sys.modules.get("numpy")
    np_state = numpy.random.get_state() if numpy is not None and hasattr(numpy, "random") else None
    return torch.random.get_rng_state(), cuda, random.getstate(), np_state


def _restore_rng(saved: tuple[Any, Any, Any, Any]) -> None:
    cpu, cuda, python, np_state = saved
    torch.random.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(python)
    numpy = sys.modules.get("numpy")
    if np_state is not None and numpy is not None:
        numpy.random.set_state(np_state)


@contextlib.contextmanager
def preserved(model: nn.Module | None = None) -> Iterator[None]:
    """Restore the process state described above, and the hooks of `model`'s modules, after the block."""
    flags = _flags()
    values = [get() for get, _ in flags]
    device_context = _device_context()
    device = torch.get_default_device() if hasattr(torch, "get_default_device") else torch.device("cpu")
    rng = _rng_state()
    global_module = torch.nn.modules.module
    global_hooks = _hook_state(global_module)
    modules = list(model.modules()) if model is not None else []
    module_hooks = [_hook_state(m) for m in modules]
    try:
        yield
    finally:
        for m, saved in zip(modules, module_hooks):
            _restore_hooks(m, saved)
        _restore_hooks(global_module, global_hooks)
        _restore_default_device(device_context, device)
        for (get, set_), value in zip(flags, values):
            if get() != value:
                set_(value)
        _restore_rng(rng)
