"""Normalisations: the output's second moment is the affine's (γ² + β²) and the gradient is scaled by
1 / the normalised statistic, per group of values it is computed over (batch norm's projection of the
mean and scale directions removes a little more at small groups)."""

from __future__ import annotations

import math
from typing import Any

from gradlint.estimate.stat import Stat
from gradlint.estimate.table import (
    Context,
    Family,
    Gains,
    Result,
    add_gain,
    ref_name,
    transfer,
)
from gradlint.graph import NodeRecord, Ref


def _affine(ctx: Context, weight: Any, bias: Any) -> tuple[float, float, float]:
    _g_mean, g2 = ctx.weight(weight) if weight is not None else (1.0, 1.0)
    b_mean, b2 = ctx.weight(bias) if bias is not None else (0.0, 0.0)
    return g2, b_mean, b2


def _normalised(node: NodeRecord, ctx: Context, x: Any, var: float, eps: float, group: int, weight: Any, bias: Any, v_scale: float) -> Result:
    g2, b_mean, b2 = _affine(ctx, weight, bias)
    var = max(var, 0.0)
    keep = var / (var + eps) if var + eps > 0 else 0.0
    # Normalising by the sample variance of `group` values: E[1/sigma_hat^2] = group/(group-3) / var, and the
    # backward projects out the mean and scale directions, a factor (group-2)/group.
    projection = (group - 2) / (group - 3) if group > 4 else 1.0
    gains: Gains = {}
    add_gain(gains, x, g2 / (var + eps) * projection)
    if isinstance(x, Ref):  # what the gain would be at unit input scale (see Estimate.r_scale_free)
        ctx.note(node, "normalizes", {x.name: g2 * projection * (var / max(ctx.stat(x).q, 1e-30))})
    return Stat(b_mean, g2 * keep + b2, g2 * v_scale / (var + eps), *_standardised(ctx.stat(x), g2 / (var + eps))), gains


def _standardised(sx: Stat, scale: float) -> tuple[float, float]:
    """The input's third and fourth cumulants after multiplying by sqrt(scale): a normalisation keeps the
    shape of each unit's distribution (when all units share one, no spread of per-unit means)."""
    if sx.between > 1e-6 * max(sx.q, 1e-30) or scale <= 0:
        return 0.0, 0.0
    return sx.k3 * scale ** 1.5, sx.k4 * scale * scale


# (training flag index or a fixed value, eps index) for each batch-norm op the captures produce
_BATCH_NORM_ARGS: dict[str, tuple[int | bool, int]] = {
    "batch_norm": (5, 7), "native_batch_norm": (5, 7), "cudnn_batch_norm": (5, 7),
    "_native_batch_norm_legit_functional": (True, 7), "_native_batch_norm_legit": (5, 7),
    "_native_batch_norm_legit_no_training": (False, 6),
}


@transfer(*_BATCH_NORM_ARGS, family=Family.NORMALISATION)
def batch_norm(node: NodeRecord, ctx: Context) -> Result:
    x, weight, bias = node.arg(0), node.arg(1), node.arg(2)
    running_mean, running_var = node.arg(3), node.arg(4)
    training_at, eps_at = _BATCH_NORM_ARGS[node.op]
    training = bool(node.arg(training_at, "training", True)) if isinstance(training_at, int) and not isinstance(training_at, bool) else training_at
    eps = float(node.arg(eps_at, "eps", 1e-5))
    sx = ctx.stat(x)
    shape = ctx.shape(x) or (1, 1)
    channels = shape[1] if len(shape) > 1 else 1
    group = max(ctx.numel(x) // max(channels, 1), 1)
    if training:
        ctx.note(node, "batch_statistics", group)  # values per channel: the probe needs enough of them
        return _normalised(node, ctx, x, sx.v, eps, group, weight, bias, sx.v)
    rv = ctx.weight(running_var)[0] if running_var is not None else 1.0  # mean of the running variances
    rm_mean, rm2 = ctx.weight(running_mean) if running_mean is not None else (0.0, 0.0)
    g2, b_mean, b2 = _affine(ctx, weight, bias)
    scale = g2 / (rv + eps)
    centred = max(sx.q - 2 * sx.mean * rm_mean + rm2, 0.0)  # E[(x - running_mean)^2]
    return Stat(b_mean, centred * scale + b2, sx.v * scale, *_standardised(sx, scale)), {ref_name(x) or "": scale}


@transfer("layer_norm", "native_layer_norm", family=Family.NORMALISATION)
def layer_norm(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    normalized = node.arg(1) or ()
    group = math.prod(int(d) for d in normalized) if normalized else 1
    sx = ctx.stat(x)
    return _normalised(node, ctx, x, sx.var, float(node.arg(4, "eps", 1e-5)), group, node.arg(2), node.arg(3), sx.v)


@transfer("rms_norm", family=Family.NORMALISATION)
def rms_norm(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    normalized = node.arg(1) or ()
    group = math.prod(int(d) for d in normalized) if normalized else 1
    sx = ctx.stat(x)
    eps = node.arg(3, "eps", None)
    return _normalised(node, ctx, x, sx.q, float(eps) if eps is not None else 1e-6, group, node.arg(2), None, sx.v)


@transfer("group_norm", family=Family.NORMALISATION)
def group_norm(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    groups = int(node.arg(1, "num_groups", 1))
    shape = ctx.shape(x) or (1, 1)
    group = max(math.prod(shape[1:]) // max(groups, 1), 1)
    sx = ctx.stat(x)
    return _normalised(node, ctx, x, sx.var, float(node.arg(4, "eps", 1e-5)), group, node.arg(2), node.arg(3), sx.v)


@transfer("instance_norm", family=Family.NORMALISATION)
def instance_norm(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    shape = ctx.shape(x) or (1, 1, 1)
    group = max(math.prod(shape[2:]), 1)
    sx = ctx.stat(x)
    return _normalised(node, ctx, x, sx.v, float(node.arg(7, "eps", 1e-5)), group, node.arg(1), node.arg(2), sx.v)
