"""When the contract's quantity cannot be measured as asked, say so and measure what can be.

Two cases make a probe's numbers meaningless without a word of warning:
- batch norm over a handful of values per channel (a small `--probe-batch` on a CNN whose last feature
  map is 1x1): the batch-statistics projection removes most of the gradient and what is left is noise;
- a zero-initialised output layer (torchvision's ViT heads): every gradient before it is exactly zero
  at initialisation, and stops being zero after the first step.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from gradlint.estimate import Estimate
from gradlint.graph import ModelGraph

# fewest values per channel a batch norm may normalise in the probe: at n values its statistics remove
# 2 of n directions of the gradient, so 16 keeps the measured RMS within ~7% of the large-batch value
MIN_BATCH_NORM_VALUES = 16


def batch_for_batch_norm(est: Estimate, graph: ModelGraph, capture_batch: int, probe_batch: int) -> tuple[int, str] | None:
    """(smallest batch that gives every batch norm enough values, where it was too few) when the probe's
    batch leaves some batch norm below `MIN_BATCH_NORM_VALUES` values per channel; None when it does not."""
    fewest = est.fewest_batch_statistics()
    if fewest is None or capture_batch <= 0 or probe_batch <= 0:
        return None
    node, values = fewest
    per_example = values / capture_batch
    at_probe = per_example * probe_batch
    if at_probe >= MIN_BATCH_NORM_VALUES:
        return None
    needed = math.ceil(MIN_BATCH_NORM_VALUES / per_example)
    module = graph[node].module or node
    return needed, (f"at batch {probe_batch}, the batch norm in `{module}` normalises only {at_probe:g} values per "
                    f"channel, too few for its batch statistics (the measured gradient would be noise)")


def zero_head(est: Estimate, graph: ModelGraph, model: nn.Module) -> list[str]:
    """Weighted layers with all-zero weights that every other layer's gradient passes through: with them,
    the whole profile before them is exactly zero, so there is nothing to judge."""
    params = dict(model.named_parameters())
    zero = [layer for layer in graph.weighted_layers if _all_zero(params.get(layer.weight))]
    if not zero:
        return []
    names = {layer.module for layer in zero}
    rest = [entry for entry in est.profile if entry.module not in names]
    if not rest or any(entry.log10_grad_rms is not None or entry.nonfinite for entry in rest):
        return []
    return [layer.weight for layer in zero]


def with_default_init(model: nn.Module, weights: list[str], seed: int = 0) -> nn.Module:
    """A copy of `model` whose `weights` are drawn as PyTorch's default Linear/Conv init,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from a private generator (the global RNG is not touched)."""
    twin = copy.deepcopy(model)
    params = dict(twin.named_parameters())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in weights:
            weight = params[name]
            fan_in = max(weight[0].numel(), 1)
            bound = 1.0 / math.sqrt(fan_in)
            drawn = torch.rand(weight.shape, generator=generator, dtype=torch.float64) * 2 * bound - bound
            weight.copy_(drawn.to(weight.dtype))
    return twin


def _all_zero(weight: torch.Tensor | None) -> bool:
    if weight is None or weight.device.type == "meta" or not weight.numel():
        return False
    return not bool(weight.detach().any())

