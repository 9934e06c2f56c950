"""Example inputs, in the contract's order: `--input`, `example_input_array`, then inference from the
forward's signature and the first weighted layer. gradlint draws its own inputs from a private generator,
never the global RNG."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradlint.call import Call, as_call
from gradlint.types import ErrorKind, GradlintError

BATCH = 16
SEQUENCE = 32  # token ids per example when inferred
_SPEC_RE = re.compile(r"^\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*)?(?P<dtype>[a-z]+[0-9]*)\s*\[(?P<dims>[0-9,\s]*)\]\s*$")
_DTYPES = {
    name: getattr(torch, name)
    for name in ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
}
_DTYPES.update({"float": torch.float32, "double": torch.float64, "half": torch.float16, "long": torch.int64, "int": torch.int32})
_CONV_SPATIAL = {nn.Conv1d: (64,), nn.Conv2d: (32, 32), nn.Conv3d: (16, 16, 16)}


@dataclass(frozen=True)
class InputSpec:
    """A shape and dtype, as written on the command line: `float32[16,3,224,224]`, or a keyword argument,
    `attention_mask=int64[16,128]`."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        match = _SPEC_RE.match(text)
        if not match or match["dtype"] not in _DTYPES:
            raise GradlintError(
                ErrorKind.INPUT,
                f"--input {text!r} is not DTYPE[d0,d1,...] or NAME=DTYPE[d0,d1,...], e.g. float32[16,3,224,224] "
                f"or attention_mask=int64[16,128]; dtypes: {', '.join(sorted(_DTYPES))}.",
            )
        dims = tuple(int(d) for d in match["dims"].split(",") if d.strip())
        return cls(_DTYPES[match["dtype"]], dims, match["name"])

    def __str__(self) -> str:
        text = f"{str(self.dtype).removeprefix('torch.')}[{','.join(map(str, self.shape))}]"
        return f"{self.name}={text}" if self.name else text


@dataclass
class ResolvedInputs:
    call: Call
    source: str  # "--input", "example_input_array", "given" or "inferred from <what>"

    @property
    def args(self) -> tuple[Any, ...]:
        return self.call.args

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.call.kwargs


def model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def resolve_inputs(model: nn.Module, specs: list[InputSpec] | None = None, seed: int = 0, batch: int = BATCH) -> ResolvedInputs:
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    if specs:
        high = _vocabulary(model) or 2
        args = tuple(_draw(s.dtype, s.shape, device, generator, high) for s in specs if s.name is None)
        kwargs = {s.name: _draw(s.dtype, s.shape, device, generator, high) for s in specs if s.name is not None}
        return ResolvedInputs(Call(args, kwargs), "--input")
    example = getattr(model, "example_input_array", None)
    if example is not None:
        try:
            call = as_call(example)
        except TypeError as exc:
            raise GradlintError(ErrorKind.INPUT, f"example_input_array: {exc}.") from None
        if not call.tensors():
            raise GradlintError(ErrorKind.INPUT, "example_input_array holds no tensor: give a tensor, a tuple or list "
                                                 "of arguments, or a dict of keyword arguments.")
        return ResolvedInputs(call.to(device), "example_input_array")
    named = _from_signature(model, device, generator, batch)
    if named is not None:
        return named
    return _from_first_layer(model, device, generator, batch)


def _from_signature(model: nn.Module, device: torch.device, generator: torch.Generator, batch: int) -> ResolvedInputs | None:
    """Inputs for forwards whose first parameter has one of the names the model libraries use
    (`input_ids`, `pixel_values`, `input_features`, `input_values`), sized from the model's own config
    where it documents the size; an encoder-decoder also gets `decoder_input_ids`."""
    params = _forward_parameters(model)
    if not params:
        return None
    first = params[0]
    config = getattr(model, "config", None)
    if first == "input_ids":
        vocab = _vocabulary(model) or 2
        kwargs = {"input_ids": _draw(torch.int64, (batch, SEQUENCE), device, generator, vocab)}
        if "decoder_input_ids" in params:
            kwargs["decoder_input_ids"] = _draw(torch.int64, (batch, SEQUENCE), device, generator, vocab)
        extra = " and decoder_input_ids" if "decoder_input_ids" in kwargs else ""
        return ResolvedInputs(Call((), kwargs), f"inferred from the forward's input_ids{extra} (token ids < {vocab})")
    dtype = _float_dtype(model)
    if first == "pixel_values":
        channels = int(getattr(config, "num_channels", 0) or _first_conv_channels(model) or 3)
        size = getattr(config, "image_size", None) or 224
        height, width = (size, size) if isinstance(size, int) else tuple(size)[:2]
        shape: tuple[int, ...] = (batch, channels, int(height), int(width))
    elif first == "input_features" and (mel_bins := getattr(config, "num_mel_bins", None)):
        frames = 2 * int(getattr(config, "max_source_positions", 1500))  # two stride-1/2 convolutions ahead of the encoder
        shape = (batch, int(mel_bins), frames)
    elif first == "input_values":
        shape = (batch, 16000)  # one second of 16 kHz audio
    else:
        return None
    kwargs = {first: _draw(dtype, shape, device, generator)}
    if "decoder_input_ids" in params:
        kwargs["decoder_input_ids"] = _draw(torch.int64, (batch, SEQUENCE), device, generator, _vocabulary(model) or 2)
    return ResolvedInputs(Call((), kwargs), f"inferred from the forward's {first} ({Call((), kwargs).describe()})")


def _from_first_layer(model: nn.Module, device: torch.device, generator: torch.Generator, batch: int) -> ResolvedInputs:
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        if not any(p.dim() >= 2 for p in module.parameters(recurse=False)):
            continue
        layer = name or "<root>"
        weight = next(p for p in module.parameters(recurse=False) if p.dim() >= 2)
        dtype = weight.dtype if weight.is_floating_point() else torch.float32  # a float64 model gets float64 inputs
        if isinstance(module, nn.Linear):
            return ResolvedInputs(Call((_draw(dtype, (batch, module.in_features), device, generator),)), f"inferred from {layer} (Linear)")
        for conv, spatial in _CONV_SPATIAL.items():
            if type(module) is conv or (isinstance(module, conv) and not isinstance(module, nn.modules.conv._ConvTransposeNd)):
                shape = (batch, module.in_channels, *spatial)
                return ResolvedInputs(Call((_draw(dtype, shape, device, generator),)), f"inferred from {layer} ({type(module).__name__})")
        if isinstance(module, nn.Embedding):
            shape = (batch, SEQUENCE)
            return ResolvedInputs(Call((_draw(torch.int64, shape, device, generator, module.num_embeddings),)), f"inferred from {layer} (Embedding)")
        raise GradlintError(
            ErrorKind.INPUT,
            f"Cannot infer an example input: the first weighted layer, {layer} ({type(module).__name__}), is not a "
            f"Linear, Conv or Embedding. Give one with {suggested_input_lines(model)} (or inputs per target in "
            "[tool.gradlint]), or set `example_input_array` on the model.",
        )
    raise GradlintError(
        ErrorKind.INPUT,
        f"Cannot infer an example input: the model has no weighted layer. Give one with {suggested_input_lines(model)} "
        "or set `example_input_array` on the model.",
    )


def _forward_parameters(model: nn.Module) -> list[str]:
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return []
    return [p.name for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def suggested_input_lines(model: nn.Module) -> str:
    """The --input options to write for this forward: one per parameter without a default, positional first."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return '--input "float32[16,...]"'
    options = []
    for p in signature.parameters.values():
        if p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        spec = "int64[16,32]" if "ids" in p.name or "mask" in p.name else "float32[16,...]"
        named = p.kind is p.KEYWORD_ONLY
        options.append(f'--input "{p.name}={spec}"' if named else f'--input "{spec}"')
    return " ".join(options) or '--input "float32[16,...]"'


def _vocabulary(model: nn.Module) -> int | None:
    """The token-id range: the model's input embedding where it names one, else its largest embedding."""
    getter = getattr(model, "get_input_embeddings", None)
    if callable(getter):
        try:
            embedding = getter()
        except Exception:  # an abstract or broken accessor: fall back to looking
            embedding = None
        if isinstance(embedding, nn.Embedding):
            return int(embedding.num_embeddings)
    sizes = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
    return max(sizes) if sizes else None


def _float_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _first_conv_channels(model: nn.Module) -> int | None:
    return next((m.in_channels for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)


def _draw(dtype: torch.dtype, shape: tuple[int, ...], device: torch.device, generator: torch.Generator, high: int = 2) -> torch.Tensor:
    if dtype.is_floating_point:
        tensor = torch.randn(shape, generator=generator).to(dtype)
    elif dtype is torch.bool:
        tensor = torch.randint(0, 2, shape, generator=generator).bool()
    else:
        tensor = torch.randint(0, high, shape, generator=generator).to(dtype)
    return tensor.to(device)
