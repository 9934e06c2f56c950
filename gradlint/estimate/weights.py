"""Weight statistics: measured from the tensor of a materialised model, or implied by the recorded
init call (or the layer's default init) for a model on the meta device."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradlint.recorder import ConstructionRecord, InitCall

_SAMPLE = 1 << 20


@dataclass(frozen=True)
class WeightStats:
    mean: float
    second: float  # E[w²]
    source: str  # "measured", "init:<fn>", "default:<Layer>" or "assumed"

    @property
    def var(self) -> float:
        return max(self.second - self.mean * self.mean, 0.0)


def measured(tensor: torch.Tensor) -> WeightStats:
    flat = tensor.detach().reshape(-1)
    if flat.numel() > _SAMPLE:
        flat = flat[:: flat.numel() // _SAMPLE + 1]
    flat = flat.to(torch.float64)
    if flat.numel() == 0:
        return WeightStats(0.0, 0.0, "measured")
    return WeightStats(float(flat.mean()), float((flat * flat).mean()), "measured")


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        return (shape[0] if shape else 1), (shape[0] if shape else 1)
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _arg(call: InitCall, index: int, name: str, default: Any) -> Any:
    if name in call.kwargs:
        return call.kwargs[name]
    return call.args[index] if index < len(call.args) else default


def from_init(call: InitCall, shape: tuple[int, ...]) -> WeightStats | None:
    """E[w] and E[w²] that `call` gives a tensor of `shape`, in closed form."""
    fan_in, fan_out = _fans(shape)
    fn = call.function
    source = f"init:{fn}"
    if fn == "normal_":
        mean, std = float(_arg(call, 0, "mean", 0.0)), float(_arg(call, 1, "std", 1.0))
        return WeightStats(mean, mean * mean + std * std, source)
    if fn == "uniform_":
        a = float(call.kwargs.get("a", call.kwargs.get("from", call.args[0] if call.args else 0.0)))
        b = float(call.kwargs.get("b", call.kwargs.get("to", call.args[1] if len(call.args) > 1 else 1.0)))
        return WeightStats((a + b) / 2, (a * a + a * b + b * b) / 3, source)
    if fn in ("constant_",):
        val = float(_arg(call, 0, "val", 0.0))
        return WeightStats(val, val * val, source)
    if fn == "zeros_":
        return WeightStats(0.0, 0.0, source)
    if fn == "ones_":
        return WeightStats(1.0, 1.0, source)
    if fn in ("eye_", "dirac_"):
        n = min(shape[0], shape[1]) if len(shape) >= 2 else 1
        total = math.prod(shape) if shape else 1
        frac = n / total
        return WeightStats(frac, frac, source)
    if fn in ("xavier_uniform_", "xavier_normal_"):
        gain = float(_arg(call, 0, "gain", 1.0))
        return WeightStats(0.0, gain * gain * 2.0 / (fan_in + fan_out), source)
    if fn in ("kaiming_uniform_", "kaiming_normal_"):
        a = float(_arg(call, 0, "a", 0.0))
        mode = _arg(call, 1, "mode", "fan_in")
        nonlinearity = _arg(call, 2, "nonlinearity", "leaky_relu")
        gain = nn.init.calculate_gain(nonlinearity, a) if nonlinearity in ("leaky_relu",) else nn.init.calculate_gain(nonlinearity)
        fan = fan_in if mode == "fan_in" else fan_out
        return WeightStats(0.0, gain * gain / max(fan, 1), source)
    if fn == "trunc_normal_":
        mean, std = float(_arg(call, 0, "mean", 0.0)), float(_arg(call, 1, "std", 1.0))
        a, b = float(_arg(call, 2, "a", -2.0)), float(_arg(call, 3, "b", 2.0))
        return _truncated_normal(mean, std, a, b, source)
    if fn == "orthogonal_":
        gain = float(_arg(call, 0, "gain", 1.0))
        rows, cols = shape[0], (math.prod(shape[1:]) if len(shape) > 1 else 1)
        return WeightStats(0.0, gain * gain / max(rows, cols), source)
    if fn == "sparse_":
        sparsity, std = float(_arg(call, 0, "sparsity", 0.1)), float(_arg(call, 1, "std", 0.01))
        zeros = math.ceil(sparsity * shape[0]) / shape[0] if shape else 0.0
        return WeightStats(0.0, (1 - zeros) * std * std, source)
    return None


def _truncated_normal(mean: float, std: float, a: float, b: float, source: str) -> WeightStats:
    alpha, beta = (a - mean) / std, (b - mean) / std

    def pdf(x: float) -> float:
        return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    z = max(cdf(beta) - cdf(alpha), 1e-12)
    m = mean + std * (pdf(alpha) - pdf(beta)) / z
    var = std * std * (1 + (alpha * pdf(alpha) - beta * pdf(beta)) / z - ((pdf(alpha) - pdf(beta)) / z) ** 2)
    return WeightStats(m, var + m * m, source)


def default_for(module: nn.Module | None, name: str, shape: tuple[int, ...]) -> WeightStats:
    """PyTorch's own default init for the layer types that have one; N(0,1/fan_in)-like otherwise."""
    fan_in, _ = _fans(shape)
    kind = type(module).__name__ if module is not None else "?"
    if isinstance(module, nn.Embedding):
        return WeightStats(0.0, 1.0, "default:Embedding")
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)) or type(module).__name__ == "RMSNorm":
        return WeightStats(1.0, 1.0, f"default:{kind}") if name.endswith("weight") else WeightStats(0.0, 0.0, f"default:{kind}")
    if isinstance(module, nn.RNNBase):
        bound = 1.0 / math.sqrt(module.hidden_size)
        return WeightStats(0.0, bound * bound / 3, f"default:{kind}")
    if name.endswith("bias") and len(shape) == 1:
        weight = getattr(module, "weight", None)  # Linear/Conv draw the bias from U(±1/sqrt(fan_in of the weight))
        owner_fan = _fans(tuple(weight.shape))[0] if isinstance(weight, torch.Tensor) and weight.dim() >= 2 else fan_in
        bound = 1.0 / math.sqrt(max(owner_fan, 1))
        return WeightStats(0.0, bound * bound / 3, f"default:{kind}")
    # kaiming_uniform_(a=sqrt(5)): Linear, Conv and most layers that follow their convention
    return WeightStats(0.0, 1.0 / (3.0 * max(fan_in, 1)), f"default:{kind}" if module is not None else "assumed")


class WeightTable:
    """E[w] and E[w²] for every parameter of a model, looked up by qualified name, computed once."""

    def __init__(self, model: nn.Module, record: ConstructionRecord | None = None) -> None:
        self.model = model
        self.record = record
        self._params = dict(model.named_parameters(remove_duplicate=False))
        self._buffers = dict(model.named_buffers(remove_duplicate=False))
        self._cache: dict[str, WeightStats] = {}

    def tensor(self, name: str) -> torch.Tensor | None:
        return self._params.get(name, self._buffers.get(name))

    def stats(self, name: str) -> WeightStats:
        if name not in self._cache:
            self._cache[name] = self._compute(name)
        return self._cache[name]

    def _compute(self, name: str) -> WeightStats:
        tensor = self.tensor(name)
        if tensor is None:
            return WeightStats(0.0, 1.0, "assumed")
        if tensor.device.type != "meta":
            return measured(tensor)
        shape = tuple(tensor.shape)
        call = self.record.init_of(tensor) if self.record is not None else None
        if call is not None:
            found = from_init(call, shape)
            if found is not None:
                return found
        owner_path, _, leaf = name.rpartition(".")
        try:
            owner = self.model.get_submodule(owner_path) if owner_path else self.model
        except AttributeError:
            owner = None
        return default_for(owner, leaf, shape)
