"""Example inputs, in the contract's order: `--input`, `example_input_array`, then inference from the
first weighted layer. gradlint draws its own inputs from a private generator, never the global RNG."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradlint.types import ErrorKind, GradlintError

BATCH = 16
_SPEC_RE = re.compile(r"^\s*(?P<dtype>[a-z]+[0-9]*)\s*\[(?P<dims>[0-9,\s]*)\]\s*$")
_DTYPES = {
    name: getattr(torch, name)
    for name in ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
}
_DTYPES.update({"float": torch.float32, "double": torch.float64, "half": torch.float16, "long": torch.int64, "int": torch.int32})
_CONV_SPATIAL = {nn.Conv1d: (64,), nn.Conv2d: (32, 32), nn.Conv3d: (16, 16, 16)}


@dataclass(frozen=True)
class InputSpec:
    """A shape and dtype, as written on the command line: `float32[16,3,224,224]`."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> "InputSpec":
        match = _SPEC_RE.match(text)
        if not match or match["dtype"] not in _DTYPES:
            raise GradlintError(
                ErrorKind.INPUT,
                f"--input {text!r} is not DTYPE[d0,d1,...], e.g. float32[16,3,224,224] or int64[16,128]; "
                f"dtypes: {', '.join(sorted(_DTYPES))}.",
            )
        dims = tuple(int(d) for d in match["dims"].split(",") if d.strip())
        return cls(_DTYPES[match["dtype"]], dims)


@dataclass
class ResolvedInputs:
    args: tuple[Any, ...]
    source: str  # "--input", "example_input_array" or "inferred from <layer>"


def model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def resolve_inputs(model: nn.Module, specs: list[InputSpec] | None = None, seed: int = 0, batch: int = BATCH) -> ResolvedInputs:
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    if specs:
        high = _first_embedding_size(model) or 2
        return ResolvedInputs(tuple(_draw(s.dtype, s.shape, device, generator, high) for s in specs), "--input")
    example = getattr(model, "example_input_array", None)
    if example is not None:
        args = example if isinstance(example, tuple) else (example,)
        if all(isinstance(a, torch.Tensor) for a in args):
            return ResolvedInputs(tuple(a.to(device) if device.type != "meta" else a.to("meta") for a in args), "example_input_array")
        raise GradlintError(ErrorKind.INPUT, "example_input_array must be a tensor or a tuple of tensors.")
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        if not any(p.dim() >= 2 for p in module.parameters(recurse=False)):
            continue
        layer = name or "<root>"
        weight = next(p for p in module.parameters(recurse=False) if p.dim() >= 2)
        dtype = weight.dtype if weight.is_floating_point() else torch.float32  # a float64 model gets float64 inputs
        if isinstance(module, nn.Linear):
            return ResolvedInputs((_draw(dtype, (batch, module.in_features), device, generator),), f"inferred from {layer} (Linear)")
        for conv, spatial in _CONV_SPATIAL.items():
            if type(module) is conv or (isinstance(module, conv) and not isinstance(module, nn.modules.conv._ConvTransposeNd)):
                shape = (batch, module.in_channels, *spatial)
                return ResolvedInputs((_draw(dtype, shape, device, generator),), f"inferred from {layer} ({type(module).__name__})")
        if isinstance(module, nn.Embedding):
            shape = (batch, 32)
            return ResolvedInputs((_draw(torch.int64, shape, device, generator, module.num_embeddings),), f"inferred from {layer} (Embedding)")
        raise GradlintError(
            ErrorKind.INPUT,
            f"Cannot infer an example input: the first weighted layer, {layer} ({type(module).__name__}), is not a "
            "Linear, Conv or Embedding. Give one with --input \"float32[16,...]\" (or inputs per target in "
            "[tool.gradlint]), or set `example_input_array` on the model.",
        )
    raise GradlintError(
        ErrorKind.INPUT,
        "Cannot infer an example input: the model has no weighted layer. Give one with --input or set "
        "`example_input_array` on the model.",
    )


def _first_embedding_size(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return module.num_embeddings
    return None


def _draw(dtype: torch.dtype, shape: tuple[int, ...], device: torch.device, generator: torch.Generator, high: int = 2) -> torch.Tensor:
    if dtype.is_floating_point:
        tensor = torch.randn(shape, generator=generator).to(dtype)
    elif dtype is torch.bool:
        tensor = torch.randint(0, 2, shape, generator=generator).bool()
    else:
        tensor = torch.randint(0, high, shape, generator=generator).to(dtype)
    return tensor.to(device)
